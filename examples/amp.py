"""DASH with mixed precision: autocast, GradScaler, and SAM's two steps under GradScaler.

On a CUDA machine this trains under float16 autocast with a GradScaler; on a CPU it uses
bfloat16 autocast (the CPU GradScaler still runs, to show the calls)::

    python examples/amp.py            # DASHWrapper(SGD) with scaler.step(opt)
    python examples/amp.py --sam      # DASHWrapper(SAM) with torch_dash_optim.amp.sam_amp_step
    python examples/amp.py --tiny     # the smoke test run by tests/repository/test_examples.py

The rules: always pass the *wrapper* to every GradScaler call (``scale``/``unscale_``/
``step``); and for SAM, use ``sam_amp_step``, which unscales before each of the two steps and
skips both on inf/NaN.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, TensorDataset

from torch_dash_optim import SAM, DASHWrapper
from torch_dash_optim.amp import sam_amp_step


def make_chunks(num_chunks: int, per_chunk: int, seed: int) -> list[TensorDataset]:
    """Small 3x8x8 'images' of 4 classes (a class pattern plus noise), split into chunks."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(4, 3, 8, 8, generator=g)
    chunks = []
    for _ in range(num_chunks):
        y = torch.randint(0, 4, (per_chunk,), generator=g)
        chunks.append(TensorDataset(patterns[y] * 0.5 + torch.randn(per_chunk, 3, 8, 8, generator=g), y))
    return chunks


def make_model(width: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, 4),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a smoke-test sized run")
    parser.add_argument("--sam", action="store_true", help="use SAM (with the GradScaler recipe)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    chunks, epochs, per_chunk, width = (2, 1, 32, 8) if args.tiny else (3, 5, 512, 32)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    torch.manual_seed(args.seed)
    model = make_model(width).to(device)
    loss_fn = nn.CrossEntropyLoss()
    if args.sam:
        base: torch.optim.Optimizer = SAM(
            model.parameters(), torch.optim.SGD, rho=0.05, lr=0.05, momentum=0.9
        )
    else:
        base = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    # autocast_dtype: the gradient pass of on_new_data runs under autocast too; factors are float32.
    opt = DASHWrapper(base, model=model, loss_fn=loss_fn, autocast_dtype=amp_dtype)
    scaler = torch.amp.GradScaler(device.type)

    parts = make_chunks(chunks, per_chunk, args.seed)
    for k in range(chunks):
        seen = ConcatDataset(parts[: k + 1])
        if k > 0:
            report = opt.on_new_data(DataLoader(seen, batch_size=64, shuffle=False))
            print(f"chunk {k}: DASH mean factor {report.mean_factor:.3f}")
        skipped = 0
        for _ in range(epochs):
            model.train()
            for x, y in DataLoader(seen, batch_size=64, shuffle=True):
                x, y = x.to(device), y.to(device)
                if args.sam:

                    def closure(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
                        with torch.autocast(device.type, dtype=amp_dtype):
                            return loss_fn(model(x), y)  # forward only: sam_amp_step does backward

                    loss, stepped = sam_amp_step(opt, scaler, closure)
                    skipped += not stepped
                else:
                    opt.zero_grad()
                    with torch.autocast(device.type, dtype=amp_dtype):
                        loss = loss_fn(model(x), y)
                    scaler.scale(loss).backward()
                    scaler.unscale_(opt)  # the wrapper, never opt.optimizer
                    nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                    scaler.step(opt)
                    scaler.update()
        print(f"chunk {k}: {len(seen)} samples, last loss {loss.item():.3f}, skipped steps {skipped}")
    print("done")


if __name__ == "__main__":
    main()
