"""Quick start: warm start, cold start and DASH side by side, as the training data grows.

The data follows the paper's model and is generated here (nothing is downloaded). An input is
8 patches of 16 values. One patch carries its class's feature: a common one (70% of samples)
or a rare one (30%). The other patches carry label-independent noise, which a network can
memorize instead of learning the rare features. The training set arrives in 4 chunks; after
each, every method trains on all the data so far until it fits it (99.9% train accuracy):

* **warm**: keeps training the model it has;
* **cold**: starts a new model each time;
* **DASH**: keeps the model, but ``opt.on_new_data(...)`` shrinks it first, each unit by
  ``clamp(cos(w, -g), 0.3, 1)``.

It runs a few seeds, prints each method's test accuracy and training steps, then which ended
better and by how much, seed by seed.

Run: ``python examples/quickstart.py`` (3 seeds, about 20 s of CPU time; ``--seeds 5`` for
more, ``--tiny`` for a smoke run).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import Tensor, nn

from torch_dash_optim import DASHWrapper

PATCHES, PATCH, CLASSES = 8, 16, 10
METHODS = ("warm", "cold", "dash")


def make_data(n: int, common: Tensor, rare: Tensor, g: torch.Generator, p_rare: float = 0.3) -> tuple[Tensor, Tensor]:
    """``n`` samples: one patch holds the class's common or rare feature, the rest is noise."""
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    is_rare = torch.rand(n, generator=g) < p_rare
    feature = torch.where(is_rare[:, None], rare[labels], common[labels])
    x = torch.randn(n, PATCHES, PATCH, generator=g) / PATCH**0.5  # noise patches of norm about 1
    x[torch.arange(n), torch.randint(0, PATCHES, (n,), generator=g)] = feature
    return x.reshape(n, 1, PATCHES * PATCH), labels


def new_model() -> nn.Module:
    """A conv layer that reads each patch, a max over patches, and a linear classifier."""
    return nn.Sequential(
        nn.Conv1d(1, 64, PATCH, stride=PATCH), nn.ReLU(), nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(64, CLASSES)
    )


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def fit(model: nn.Module, opt: torch.optim.Optimizer, x: Tensor, y: Tensor, max_epochs: int) -> int:
    """Train until 99.9% train accuracy (or ``max_epochs``); return the SGD steps taken."""
    loss_fn, steps = nn.CrossEntropyLoss(), 0
    for _ in range(max_epochs):
        model.train()
        for idx in torch.randperm(len(y)).split(64):
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
            steps += 1
        if accuracy(model, x, y) >= 0.999:
            break
    return steps


def run(method: str, seed: int, n: int, chunks: int, max_epochs: int) -> tuple[float, int, str]:
    """One method on one seed: test accuracy (%) at the end, steps on the last chunk, DASH's factors."""
    g = torch.Generator().manual_seed(seed)  # the same data for every method
    features = torch.nn.functional.normalize(torch.randn(2 * CLASSES, PATCH, generator=g), dim=1)
    common, rare = features[:CLASSES], features[CLASSES:]
    x, y = make_data(n, common, rare, g)
    x_test, y_test = make_data(2000, common, rare, g)

    torch.manual_seed(seed)  # the same initial model for every method
    model = new_model()

    def optimizer(model: nn.Module) -> torch.optim.Optimizer:
        sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        return DASHWrapper(sgd, model=model, loss_fn=nn.CrossEntropyLoss()) if method == "dash" else sgd

    opt, size, factors = optimizer(model), n // chunks, ""
    for k in range(1, chunks + 1):
        if k > 1 and method == "cold":
            model = new_model()
            opt = optimizer(model)
        if k > 1 and method == "dash":
            # All the data so far, in order, the new chunk last: one batch per chunk, as the authors do.
            loader = [(x[j * size : (j + 1) * size], y[j * size : (j + 1) * size]) for j in range(k)]
            report = opt.on_new_data(loader)
            f = torch.cat([t.flatten() for t in report.factors.values()])
            factors = (f"factors {f.min():.2f}..{f.max():.2f}, median {f.median():.2f}, "
                       f"{100 * report.at_floor:.0f}% at the floor 0.3")  # fmt: skip
        steps = fit(model, opt, x[: k * size], y[: k * size], max_epochs)
    return 100 * accuracy(model, x_test, y_test), steps, factors


def verdict(name: str, diffs: list[float]) -> str:
    """``name``: the mean paired difference, its range, and on how many seeds it is positive."""
    mean, wins = statistics.fmean(diffs), sum(d > 0 for d in diffs)
    return (f"{name}: {mean:+.1f} points on average (from {min(diffs):+.1f} to {max(diffs):+.1f}), "
            f"higher on {wins} of {len(diffs)} seeds")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds (default 3)")
    parser.add_argument("--tiny", action="store_true", help="a few seconds' smoke run")
    args = parser.parse_args(argv)
    n, chunks, max_epochs, seeds = (200, 2, 2, 1) if args.tiny else (800, 4, 100, args.seeds)
    torch.set_num_threads(1)  # tiny layers: one thread is fastest

    start = time.perf_counter()
    acc: dict[str, list[float]] = {m: [] for m in METHODS}
    for seed in range(seeds):
        results = {m: run(m, seed, n, chunks, max_epochs) for m in METHODS}
        for m, (a, _, _) in results.items():
            acc[m].append(a)
        line = ", ".join(f"{m} {a:.1f}% ({s} steps)" for m, (a, s, _) in results.items())
        print(f"seed {seed}: test accuracy after the last chunk: {line}")
        print(f"         DASH's last shrink: {results['dash'][2]}")

    def diff(a: str, b: str) -> list[float]:
        return [x - y for x, y in zip(acc[a], acc[b], strict=True)]

    print()
    print(verdict("DASH - warm", diff("dash", "warm")))
    print(verdict("DASH - cold", diff("dash", "cold")))
    print(verdict("cold - warm", diff("cold", "warm")))
    best = max(METHODS, key=lambda m: statistics.fmean(acc[m]))
    print(f"Ended best on average: {best} ({statistics.fmean(acc[best]):.1f}%). "
          f"{seeds} seed(s) show a tendency, not proof: `dash-warmstart` gives confidence intervals.")  # fmt: skip
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
