"""Work in worker processes: every result handed back, the same as in this process."""

from __future__ import annotations

import math

import pytest

from torch_dash_optim.experiments.workers import run_in_workers


def _square_root_of_threads(x: float) -> tuple[float, int]:
    import torch

    return math.sqrt(x), torch.get_num_threads()


def test_workers_give_every_result_once_and_run_one_thread_each() -> None:
    here: dict[float, tuple[float, int]] = {}
    run_in_workers(_square_root_of_threads, [4.0, 9.0, 16.0], here.__setitem__)
    there: dict[float, tuple[float, int]] = {}
    run_in_workers(_square_root_of_threads, [4.0, 9.0, 16.0], there.__setitem__, jobs=2)
    assert {k: v[0] for k, v in here.items()} == {k: v[0] for k, v in there.items()} == {4.0: 2.0, 9.0: 3.0, 16.0: 4.0}
    assert {v[1] for v in there.values()} == {1}


def _fails(x: int) -> int:
    if x == 2:
        raise ArithmeticError(f"no {x}")
    return x


def test_a_failing_item_is_raised_and_the_finished_ones_are_kept() -> None:
    got: dict[int, int] = {}
    with pytest.raises(ArithmeticError, match="no 2"):
        run_in_workers(_fails, [1, 2], got.__setitem__, jobs=2)
    assert set(got) <= {1}
    with pytest.raises(ValueError, match="jobs=0 must be an integer >= 1"):
        run_in_workers(_fails, [1], got.__setitem__, jobs=0)
