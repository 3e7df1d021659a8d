"""Quick start: a classifier trained as its data grows, in three steps, with DASH between steps.

The data is generated here (no download): each class has a feature direction, and every sample
also carries strong label-independent noise, the setting of the paper's theory. The training set
arrives in three chunks; before training on the grown data, ``on_new_data`` shrinks the model.

Run: ``python examples/quickstart.py`` (under a minute on a CPU; ``--tiny`` for a
smoke run).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, TensorDataset

from torch_dash_optim import DASHWrapper


def make_data(n: int, features: torch.Tensor, generator: torch.Generator) -> TensorDataset:
    """Samples of the class features (one direction per class) plus label-independent noise."""
    classes, dim = features.shape
    labels = torch.randint(0, classes, (n,), generator=generator)
    x = features[labels] * 0.5 + torch.randn(n, dim, generator=generator)
    return TensorDataset(x, labels)


def accuracy(model: nn.Module, data: TensorDataset) -> float:
    model.eval()
    with torch.no_grad():
        x, y = data.tensors
        return (model(x).argmax(1) == y).float().mean().item()


def train(model: nn.Module, opt: torch.optim.Optimizer, data: ConcatDataset, epochs: int, batch: int) -> int:
    """Train until the training accuracy is 99.9% or ``epochs`` run out; return the steps taken."""
    loss_fn, steps = nn.CrossEntropyLoss(), 0
    for _ in range(epochs):
        model.train()
        for x, y in DataLoader(data, batch_size=batch, shuffle=True):
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
            steps += 1
        full = TensorDataset(*map(torch.cat, zip(*(d.tensors for d in data.datasets))))
        if accuracy(model, full) >= 0.999:
            break
    return steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a few seconds' smoke run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    n, dim, epochs = (300, 16, 3) if args.tiny else (1500, 32, 30)

    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    classes = 10
    features = torch.randn(classes, dim, generator=g)
    whole, test = make_data(n, features, g), make_data(n, features, g)
    chunks = [TensorDataset(*(t[i::3] for t in whole.tensors)) for i in range(3)]

    model = nn.Sequential(nn.Linear(dim, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, classes))
    opt = DASHWrapper(
        torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        model=model,
        loss_fn=nn.CrossEntropyLoss(),
    )
    start = time.perf_counter()
    for step in range(1, 4):
        seen = ConcatDataset(chunks[:step])  # all data so far, the new chunk last
        if step > 1:
            report = opt.on_new_data(DataLoader(seen, batch_size=128, shuffle=False))
            print(f"  DASH: mean factor {report.mean_factor:.3f}, {100 * report.at_floor:.0f}% of units at the floor")
        steps = train(model, opt, seen, epochs, batch=128)
        print(f"step {step}: {len(seen):5d} samples, {steps:4d} SGD steps, test accuracy {accuracy(model, test):.3f}")
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
