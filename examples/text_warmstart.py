"""DASH on a small causal transformer, as real text arrives in chunks (offline: the standard library's source).

The text is byte-level: ``.py`` files of your Python's standard library, some held out. At each
new chunk, ``opt.on_new_data`` takes one gradient pass over *all the text so far, new text last*
and shrinks the q/k/v/out, MLP and head Linear layers (embeddings and norms are left alone);
then training goes on as usual::

    python examples/text_warmstart.py            # about a minute on a CPU
    python examples/text_warmstart.py --tiny     # the smoke test run by tests/repository/test_examples.py

The full comparison with cold, warm and Shrink & Perturb starts, over five seeds, is
``python -m torch_dash_optim.experiments.text --out results/text-stdlib``.
"""

from __future__ import annotations

import argparse

import torch

from torch_dash_optim import DASHWrapper
from torch_dash_optim.experiments.text import (
    CausalLM,
    TextConfig,
    draw_split,
    heldout_loss,
    next_token_loss,
    read_corpus,
    windows,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a smoke-test sized run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.tiny:
        cfg = TextConfig(chunks=2, train_bytes=4096, heldout_bytes=1024, segment_bytes=1024, context=16, width=16,
                         heads=2, layers=1, batch_size=16, epochs=1)
    else:
        cfg = TextConfig(chunks=3, train_bytes=24576, heldout_bytes=8192, epochs=4)

    torch.manual_seed(args.seed)
    split = draw_split(read_corpus(), args.seed, cfg)  # held-out files are never trained on
    chunks = [windows(c, cfg.context) for c in split.chunks(cfg.chunks)]
    heldout = windows(split.heldout, cfg.context)
    model = CausalLM(context=cfg.context, width=cfg.width, heads=cfg.heads, layers=cfg.layers)
    opt = DASHWrapper(torch.optim.AdamW(model.parameters(), lr=cfg.lr), model=model, batch_loss=next_token_loss)

    for k in range(1, cfg.chunks + 1):
        seen = torch.cat(chunks[:k])  # all the text so far, the new chunk last
        if k > 1:
            report = opt.on_new_data(seen.split(cfg.batch_size))  # in order, no shuffling
            print(f"chunk {k}: DASH shrank {len(report.params)} tensors, mean factor {report.mean_factor:.3f}, "
                  f"left alone: {', '.join(sorted(report.skipped))}")
        for _epoch in range(cfg.epochs):
            for batch in seen[torch.randperm(len(seen))].split(cfg.batch_size):
                opt.zero_grad()
                next_token_loss(model, batch).backward()
                opt.step()
        loss = heldout_loss(model, heldout)
        print(f"chunk {k}: {len(seen) * (cfg.context + 1)} bytes seen, held-out loss {loss:.3f} nats/byte")


if __name__ == "__main__":
    main()
