"""CUDA only: no host-device synchronisation inside the gathering loop, and how many after it.

The loader is wrapped (:class:`SyncCheckedLoader`) so that ``torch.cuda.set_sync_debug_mode("error")``
is on from the first batch until the loader is exhausted: any synchronising call made while
DASH gathers (``.item()``, ``.tolist()``, a blocking copy, ...) raises. When the loader is
exhausted the mode turns to ``"warn"`` until ``on_new_data`` returns, and the warnings are
counted with their source lines: those are the synchronisations after the loop. By design
there is one in the gathering itself, the finiteness check of the gathered direction
(``bool(finite.all())`` in :func:`torch_dash_optim.gather._check_finite`, which decides
whether anything may be shrunk), plus the one ``.tolist()`` that fills the report's per-parameter
statistics (:func:`torch_dash_optim.report.param_reports`).
The ratio benchmarks themselves run on CUDA through ``python -m benchmarks --device cuda``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from torch_dash_optim import DASHWrapper

from .config import Config
from .models import CASES, make_case
from .results import Result, Run

__all__ = ["SyncCheckedLoader", "check_case", "run"]


class SyncCheckedLoader:
    """Iterate over ``batches`` with CUDA sync debug mode ``"error"``, then set ``after``.

    Parameters
    ----------
    batches:
        The batches.
    enabled:
        ``False`` makes it a plain pass-through (CPU).
    after:
        The sync debug mode left on once the batches are exhausted (``"warn"`` to count the
        synchronisations after the loop; the caller resets it).

    Examples
    --------
    >>> list(SyncCheckedLoader([1, 2], enabled=False))
    [1, 2]
    """

    def __init__(self, batches: Iterable[Any], enabled: bool = True, after: str | int = 0) -> None:
        self.batches = batches
        self.enabled = enabled
        self.after = after

    def __iter__(self) -> Iterator[Any]:
        if self.enabled:
            torch.cuda.set_sync_debug_mode("error")
        try:
            yield from self.batches
        finally:
            if self.enabled:
                torch.cuda.set_sync_debug_mode(self.after)


def check_case(opt: DASHWrapper, batches: list[Any]) -> tuple[bool, str, list[str]]:
    """Run ``opt.on_new_data`` under the check; return (no sync in the loop, note, syncs after it).

    The syncs after the loop are given as ``file:line`` of the Python frame that made them.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            opt.on_new_data(SyncCheckedLoader(batches, after="warn"))
            ok, note = True, "set_sync_debug_mode('error') from the first batch to the last"
        except RuntimeError as err:
            ok, note = False, f"synchronised in the loop: {str(err).splitlines()[0][:160]}"
        finally:
            torch.cuda.set_sync_debug_mode(0)
    after = [
        f"{w.filename.rsplit('/', 2)[-2]}/{w.filename.rsplit('/', 1)[-1]}:{w.lineno}"
        for w in caught
        if "synchroniz" in str(w.message)
    ]
    return ok, note, after


def run(cfg: Config, out: Run) -> None:
    """Check every case, and ResNet-18 under bf16 autocast, for synchronisations (CUDA only)."""
    if not (cfg.device.startswith("cuda") and torch.cuda.is_available()):
        out.add(Result("gpu", "sync check", 0.0, "syncs", "", None, "not run: no CUDA device", key="gpu/not_run"))
        return
    checks = [(name, None) for name in CASES] + [("resnet18", torch.bfloat16)]
    for name, dtype in checks:
        case = make_case(name, quick=cfg.quick, device=cfg.device)
        opt = DASHWrapper(
            torch.optim.SGD(case.model.parameters(), lr=0.1),
            model=case.model,
            loss_fn=case.loss_fn,
            autocast_dtype=dtype,
        )
        opt.on_new_data(case.loader)  # warm-up: lazy CUDA initialisation may synchronise once
        ok, note, after = check_case(opt, case.loader)
        label = name if dtype is None else f"{name}, autocast {str(dtype).removeprefix('torch.')}"
        out.add(
            Result(
                "gpu",
                f"{label}: host-device syncs in the gathering loop",
                0.0 if ok else 1.0,
                "syncs",
                "<= 0",
                ok,
                note,
                key=f"gpu/{name}{'' if dtype is None else '_bf16'}/loop",
            )
        )
        out.add(
            Result(
                "gpu",
                f"{label}: syncs after the loop, until on_new_data returns",
                float(len(after)),
                "syncs",
                note="; ".join(after) or "none",
                key=f"gpu/{name}{'' if dtype is None else '_bf16'}/after",
            )
        )
