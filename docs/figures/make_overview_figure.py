"""Make ``docs/figures/overview.png``, the figure of the Overview page.

Run from the repository root, with the package and its ``experiments`` extra installed
(``pip install -e ".[experiments]"``: mnist1d and matplotlib). It takes about two minutes on
one CPU core; the figure is committed, so the docs build never runs this::

    python docs/figures/make_overview_figure.py

Data: MNIST-1D (the ``mnist1d`` package generates it locally; nothing is downloaded), 5000
training and 1000 test sequences, fed to the model in equal chunks. Model: an MLP
40-256-256-10 trained with SGD (lr 0.01, momentum 0.9, batch 64) at every stage until it fits
99.9 % of the data seen so far. Three ways to start each stage are compared on the same data and
seeds: from a fresh initialisation (cold), from the previous weights (warm) and from the
previous weights after ``DASHWrapper.on_new_data`` (lambd=0.3, alpha=0.3, the paper's values;
one batch per chunk, as in the authors' code).

Top panel: test accuracy after each stage (mean over seeds, band = min..max). Bottom panel: the
shrink factors that one real ``on_new_data`` call applied (the last stage of the first seed),
read back from the weights as the norm of each unit after the call over its norm before.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from mnist1d.data import get_dataset_args, make_dataset  # noqa: E402
from torch import nn  # noqa: E402

from torch_dash_optim import DASHWrapper  # noqa: E402

OUT = Path(__file__).resolve().parent / "overview.png"


def make_data() -> tuple[torch.Tensor, ...]:
    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = 6000, 5000 / 6000, 1
    d = make_dataset(args)
    f32 = torch.float32
    return (
        torch.tensor(d["x"], dtype=f32),
        torch.tensor(d["y"]),
        torch.tensor(d["x_test"], dtype=f32),
        torch.tensor(d["y_test"]),
    )


def make_model(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(40, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def wrap(model: nn.Module) -> DASHWrapper:
    sgd = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return DASHWrapper(sgd, model=model, loss_fn=nn.CrossEntropyLoss(), lambd=0.3, alpha=0.3)


def fit(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(300):
        for b in torch.randperm(len(x), generator=gen).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[b]), y[b]).backward()
            opt.step()
        if accuracy(model, x, y) >= 0.999:
            return


def run(method: str, seed: int, stages: int, data: tuple[torch.Tensor, ...]) -> tuple[list[float], list]:
    x, y, x_test, y_test = data
    model = make_model(1000 * seed)
    opt = wrap(model)
    accs: list[float] = []
    factors: list = []
    for stage in range(stages):
        n = len(x) * (stage + 1) // stages
        if stage and method == "cold":
            model = make_model(1000 * seed + stage)
            opt = wrap(model)
        if stage and method == "dash":
            # All the data seen so far, in order, the new chunk last, one batch per chunk
            # (as in the authors' code).
            loader = [(x[b], y[b]) for b in torch.arange(n).split(len(x) // stages)]
            before = [m.weight.detach().clone() for m in model if isinstance(m, nn.Linear)]
            opt.on_new_data(loader)
            after = [m.weight for m in model if isinstance(m, nn.Linear)]
            factors = [(a.norm(dim=1) / b.norm(dim=1)).tolist() for a, b in zip(after, before, strict=True)]
        fit(model, opt, x[:n], y[:n], seed=100 * seed + stage)
        accs.append(accuracy(model, x_test, y_test))
    return accs, factors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--stages", type=int, default=8)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = make_data()
    curves: dict[str, list[list[float]]] = {"cold": [], "warm": [], "dash": []}
    factors: list = []
    for seed in range(args.seeds):
        for method in curves:
            t0 = time.perf_counter()
            accs, f = run(method, seed, args.stages, data)
            curves[method].append(accs)
            if method == "dash" and seed == 0:
                factors = f
            took = time.perf_counter() - t0
            print(f"seed {seed} {method:4s} test acc {[round(a, 3) for a in accs]} ({took:.0f} s)")

    # Two panels stacked, 5 inches wide with 11-point text: legible when a phone shows the
    # figure at the width of its screen (the page caps its width on a wide screen).
    plt.rcParams.update({"font.size": 11, "legend.fontsize": 10})
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(5.0, 7.0), dpi=130)
    sizes = [len(data[0]) * (s + 1) // args.stages for s in range(args.stages)]
    styles = {
        "cold": ("cold start", "tab:gray"),
        "warm": ("warm start", "tab:red"),
        "dash": ("DASH", "tab:blue"),
    }
    for method, runs in curves.items():
        label, color = styles[method]
        t = torch.tensor(runs) * 100
        ax.plot(sizes, t.mean(0), marker="o", ms=3, color=color, label=label)
        ax.fill_between(sizes, t.min(0).values, t.max(0).values, color=color, alpha=0.15, lw=0)
    ax.set_xlabel("training examples seen")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"MNIST-1D, MLP, {args.seeds} seeds", fontsize=11)
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    names = ["layer 1, 256 rows", "layer 2, 256 rows", "output, 10 rows"]
    bins = torch.linspace(0.3, 1.0, 29).tolist()
    for f, name in zip(factors, names, strict=True):
        at_floor = sum(v <= 0.3 + 1e-6 for v in f) / len(f)
        bx.hist(f, bins=bins, histtype="step", lw=1.5, label=f"{name}: {100 * at_floor:.0f}%")
    bx.set_yscale("log")
    bx.set_xlabel(r"factor $s_u = \mathrm{clamp}(\cos(w_u, G_u), \lambda, 1)$")
    bx.set_ylabel("rows (log scale)")
    bx.set_title(r"factors of one on_new_data call, $\lambda = 0.3$", fontsize=11)
    bx.legend(frameon=False, title="share at the floor", title_fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
