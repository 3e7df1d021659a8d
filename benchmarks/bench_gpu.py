"""Goal 6 (CUDA only): no host-device synchronisation inside the gathering loop.

The loader is wrapped so that ``torch.cuda.set_sync_debug_mode("error")`` is on from the
first batch until the loader is exhausted: any synchronising call made while DASH gathers
(``.item()``, ``.tolist()``, a blocking copy, ...) raises. The single synchronisation after
the loop (the finiteness check and the report) is outside that window, by design.
The ratio benchmarks themselves run on CUDA through ``python -m benchmarks --device cuda``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

from torch_dash_optim import DASHWrapper

from .config import Config
from .models import CASES, make_case
from .results import Result, Run

__all__ = ["SyncCheckedLoader", "run"]


class SyncCheckedLoader:
    """Iterate over ``batches`` with CUDA sync debug mode set to ``"error"`` while iterating.

    Examples
    --------
    >>> list(SyncCheckedLoader([1, 2], enabled=False))
    [1, 2]
    """

    def __init__(self, batches: Iterable[Any], enabled: bool = True) -> None:
        self.batches = batches
        self.enabled = enabled

    def __iter__(self) -> Iterator[Any]:
        previous = torch.cuda.get_sync_debug_mode() if self.enabled else 0
        if self.enabled:
            torch.cuda.set_sync_debug_mode("error")
        try:
            yield from self.batches
        finally:
            if self.enabled:
                torch.cuda.set_sync_debug_mode(previous)


def run(cfg: Config, out: Run) -> None:
    """Check every case for synchronisations inside the gathering loop (CUDA only)."""
    if not (cfg.device.startswith("cuda") and torch.cuda.is_available()):
        out.add(Result("gpu", "sync check", 0.0, "", "0 syncs", None, "not run: no CUDA device"))
        return
    for name in CASES:
        case = make_case(name, quick=cfg.quick, device=cfg.device)
        opt = DASHWrapper(
            torch.optim.SGD(case.model.parameters(), lr=0.1), model=case.model, loss_fn=case.loss_fn
        )
        opt.on_new_data(case.loader)  # warm-up: lazy CUDA initialisation may synchronise once
        try:
            opt.on_new_data(SyncCheckedLoader(case.loader))
            ok, note = True, "set_sync_debug_mode('error') over the whole loop"
        except RuntimeError as err:
            ok, note = False, f"synchronised: {str(err).splitlines()[0][:120]}"
        out.add(
            Result(
                "gpu",
                f"{name}: host-device syncs in the gathering loop",
                0.0 if ok else 1.0,
                "",
                "0 syncs",
                ok,
                note,
            )
        )
