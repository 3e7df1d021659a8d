"""Make the two schematic panels of the landing page, ``docs/figures/idea-*.png``.

Run from the repository root (needs matplotlib, from the ``docs`` extra); it takes a second and
the PNGs are committed, so the docs build never runs it::

    python docs/figures/make_idea_figure.py

The panels are drawn, not measured: they show the rule that
:meth:`~torch_dash_optim.DASHWrapper.on_new_data` applies to each unit ``u`` of a Conv or Linear
layer, ``w_u <- clamp(cos(w_u, G_u), lambda, 1) * w_u``, with ``lambda = 0.3``.

* ``idea-vectors.png``: three units of equal norm at 25, 70 and 130 degrees from the gathered
  direction ``G_u``, before (faint) and after (solid) the shrink.
* ``idea-factor.png``: the factor against the angle between ``w_u`` and ``G_u``, the same three
  units marked.

Each panel is about 3.4 inches wide with 11-point text, so that it stays legible when a phone
shows it at the full width of its screen (the page stacks the panels there; a wide screen shows
them side by side).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

OUT = Path(__file__).resolve().parent
LAMBD = 0.3
#: (angle from G in degrees, colour, label) of the three example units.
UNITS = ((25, "tab:blue", "feature"), (70, "tab:orange", "partly"), (130, "tab:red", "noise"))
SIZE = (3.4, 2.9)
DPI = 150


def factor(angle_deg: float) -> float:
    """``clamp(cos(angle), LAMBD, 1)``."""
    return min(1.0, max(LAMBD, math.cos(math.radians(angle_deg))))


def vectors_panel(path: Path) -> None:
    fig, ax = plt.subplots(figsize=SIZE, dpi=DPI)
    arrow = {"length_includes_head": True, "head_width": 0.06, "head_length": 0.09}
    ax.arrow(0, 0, 1.25, 0, color="black", lw=2.2, **arrow)
    ax.text(1.25, -0.1, "$G_u$", ha="right", va="top", fontsize=13)
    for angle, color, label in UNITS:
        dx, dy = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        s = factor(angle)
        ax.arrow(0, 0, dx, dy, color=color, alpha=0.25, lw=1.5, **arrow)
        ax.arrow(0, 0, s * dx, s * dy, color=color, lw=2.4, **arrow)
        ax.text(1.06 * dx, 1.06 * dy, f"{label}\n×{s:.2f}", color=color, fontsize=11,
                ha="left" if dx > 0.1 else ("center" if dx > -0.1 else "right"), va="bottom")  # fmt: skip
    ax.text(0.2, -0.3, "faint: before, solid: after", ha="center", va="center", fontsize=10, color="0.3")
    ax.set_xlim(-1.05, 1.45)
    ax.set_ylim(-0.4, 1.3)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title("a unit's weight $w_u$ against $G_u$", fontsize=12)
    fig.tight_layout(pad=0.3)
    fig.savefig(path)
    plt.close(fig)


def factor_panel(path: Path) -> None:
    fig, ax = plt.subplots(figsize=SIZE, dpi=DPI)
    angles = [i / 2 for i in range(361)]
    ax.plot(angles, [math.cos(math.radians(a)) for a in angles], color="0.6", lw=1.2, ls="--", label=r"$\cos$")
    ax.plot(angles, [factor(a) for a in angles], color="black", lw=2.2, label=r"$\mathrm{clamp}(\cos, \lambda, 1)$")
    ax.axhline(LAMBD, color="0.4", lw=0.8, ls=":")
    ax.text(178, LAMBD - 0.07, rf"floor $\lambda = {LAMBD}$", ha="right", va="top", fontsize=10, color="0.3")
    for angle, color, _ in UNITS:
        ax.plot([angle], [factor(angle)], "o", color=color, ms=7)
    ax.set_xlim(0, 180)
    ax.set_ylim(-1.05, 1.1)
    ax.set_xticks([0, 45, 90, 135, 180])
    ax.set_xlabel("angle between $w_u$ and $G_u$ (degrees)", fontsize=10)
    ax.set_ylabel("factor $s_u$", fontsize=11)
    ax.tick_params(labelsize=10)
    ax.legend(frameon=False, fontsize=10, loc="lower left")
    ax.grid(alpha=0.3)
    ax.set_title(r"$w_u \leftarrow s_u\, w_u$", fontsize=12)
    fig.tight_layout(pad=0.3)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the two PNGs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    vectors_panel(args.out / "idea-vectors.png")
    factor_panel(args.out / "idea-factor.png")
    print(f"wrote {args.out / 'idea-vectors.png'} and {args.out / 'idea-factor.png'}")


if __name__ == "__main__":
    main()
