"""No host-device synchronisation inside the gathering loop (CUDA's sync debug mode turns one into an error)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from _cuda_helpers import batches, cnn, wrapped

pytestmark = pytest.mark.cuda


class _Strict:
    """Sync debug mode "error" from the first batch to the last, then "warn" to count the rest."""

    def __init__(self, data: list[Any]) -> None:
        self.data = data

    def __iter__(self) -> Iterator[Any]:
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield from self.data
        finally:
            torch.cuda.set_sync_debug_mode("warn")


@pytest.mark.parametrize("dtype", [None, torch.float16, torch.bfloat16])
def test_no_sync_in_the_loop_and_few_after_it(device: torch.device, dtype: torch.dtype | None) -> None:
    if device.type != "cuda":
        pytest.skip("CUDA's sync debug mode has no CPU counterpart")
    data = batches(device, n=6)
    model = cnn(device)
    opt = wrapped(model, torch.optim.SGD(model.parameters(), lr=0.05), autocast_dtype=dtype)
    opt.on_new_data(data)  # warm-up: lazy initialisation may synchronise
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            report = opt.on_new_data(_Strict(data))  # raises if anything in the loop synchronises
        finally:
            torch.cuda.set_sync_debug_mode(0)
    after = [f"{w.filename}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)]
    assert report.num_batches == len(data)
    # After the loop: the finiteness check of the direction (gather._check_finite) and the
    # report's statistics (one .tolist()); nothing per parameter or per batch.
    assert len(after) <= 2, after
