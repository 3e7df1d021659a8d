"""DASH in a plain training loop, with data that arrives in chunks.

Each time a chunk of new data arrives, call ``opt.on_new_data(loader)`` with a loader over
*all data seen so far, new data last* (no shuffling), then train on the grown data as usual::

    python examples/train_loop.py            # a few seconds on a CPU
    python examples/train_loop.py --tiny     # the smoke test run by tests/repository/test_examples.py
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, TensorDataset

from torch_dash_optim import DASHWrapper


def make_chunks(
    num_chunks: int, per_chunk: int, dim: int, seed: int
) -> tuple[list[TensorDataset], TensorDataset]:
    """A noisy 4-class problem in ``dim`` dimensions, split into chunks, plus a test set."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(4, dim, generator=g) * 1.5

    def sample(n: int) -> TensorDataset:
        y = torch.randint(0, 4, (n,), generator=g)
        x = centres[y] + torch.randn(n, dim, generator=g)
        flip = torch.rand(n, generator=g) < 0.1  # label noise: what DASH helps forget
        y = torch.where(flip, torch.randint(0, 4, (n,), generator=g), y)
        return TensorDataset(x, y)

    return [sample(per_chunk) for _ in range(num_chunks)], sample(4 * per_chunk)


@torch.no_grad()
def accuracy(model: nn.Module, data: TensorDataset) -> float:
    model.eval()
    x, y = data.tensors
    return (model(x).argmax(1) == y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a smoke-test sized run")
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    chunks, epochs, per_chunk, width = (2, 2, 32, 16) if args.tiny else (args.chunks, args.epochs, 400, 128)

    torch.manual_seed(args.seed)
    parts, test = make_chunks(chunks, per_chunk, dim=20, seed=args.seed)
    model = nn.Sequential(
        nn.Linear(20, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 4)
    )
    loss_fn = nn.CrossEntropyLoss()
    opt = DASHWrapper(
        torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4),
        model=model,
        loss_fn=loss_fn,
        lambd=0.3,
        alpha=0.3,
    )

    for k in range(chunks):
        seen = ConcatDataset(parts[: k + 1])  # all data so far, the new chunk last
        if k > 0:  # the data grew: shrink before training on it
            report = opt.on_new_data(DataLoader(seen, batch_size=64, shuffle=False))
            print(f"chunk {k}: DASH call {report.call}, mean factor {report.mean_factor:.3f}")
        train_loader = DataLoader(seen, batch_size=64, shuffle=True)
        for _ in range(epochs):
            model.train()
            for x, y in train_loader:
                opt.zero_grad()
                loss_fn(model(x), y).backward()
                opt.step()
        print(f"chunk {k}: {len(seen)} samples, test accuracy {accuracy(model, test):.3f}")
    print("done")


if __name__ == "__main__":
    main()
