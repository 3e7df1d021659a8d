"""DDP and FSDP2 on CPU with gloo, 2 processes, DistributedSampler shards.

One pair of processes runs every case (``_dist_worker.py``); the tests below check its
results: replicas bit-identical, no per-batch all-reduce during the gathering pass, and the
same shrink as a single process that sees the union of the ranks' batches.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from . import _dist_worker

WORLD = 2

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with gloo is unavailable",
)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("dist")
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_dist_worker.main, args=(r, WORLD, str(tmp / "init"), str(tmp)))
        for r in range(WORLD)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    for p in procs:
        if p.is_alive():
            p.kill()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def _case(results: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    out = [r[name] for r in results]
    for r in out:
        assert "error" not in r, r.get("error")
    return out


def _assert_replicas_identical(ranks: list[dict[str, Any]]) -> None:
    for name, p in ranks[0]["params"].items():
        for other in ranks[1:]:
            assert torch.equal(p, other["params"][name]), f"{name} differs across ranks"


def _assert_matches_reference(rank: dict[str, Any]) -> None:
    for name, p in rank["params"].items():
        torch.testing.assert_close(p, rank["reference"][name], rtol=1e-5, atol=1e-6, msg=name)


DDP_CASES = pytest.mark.parametrize("case", ["ddp", "ddp_bucket_view"])


@DDP_CASES
def test_ddp_replicas_stay_bit_identical(results: list[dict[str, Any]], case: str) -> None:
    ranks = _case(results, case)
    _assert_replicas_identical(ranks)
    for other in ranks[1:]:  # and after training on
        for name, p in ranks[0]["trained"].items():
            assert torch.equal(p, other["trained"][name]), name
    for rank in ranks:
        assert rank["hooks_after_dash"] == rank["train_hooks"]  # DDP's all-reduce is back


@DDP_CASES
def test_ddp_direction_is_the_global_one(results: list[dict[str, Any]], case: str) -> None:
    for rank in _case(results, case):
        _assert_matches_reference(rank)
        assert rank["num_batches"] == 4


@DDP_CASES
def test_ddp_no_per_batch_all_reduce(results: list[dict[str, Any]], case: str) -> None:
    for rank in _case(results, case):
        assert rank["train_hooks"] > 0  # the hook does see DDP's gradient all-reduce in training
        assert rank["hooks_in_dash"] == 0  # ... and none during the gathering pass (no_sync)
        # One small all-reduce (which parameters were reached), then one per gathered direction,
        # whatever the number of batches.
        assert rank["all_reduce_4_batches"] == rank["all_reduce_2_batches"] == 1 + rank["num_targets"]


@DDP_CASES
def test_ddp_modes_restored(results: list[dict[str, Any]], case: str) -> None:
    for rank in _case(results, case):
        assert rank["modes"] == [False, False, True]


def test_plain_model_in_process_group(results: list[dict[str, Any]]) -> None:
    ranks = _case(results, "plain")
    _assert_replicas_identical(ranks)
    for rank in ranks:
        _assert_matches_reference(rank)
        # Reached on no rank: still skipped (not shrunk to lambd by an all-reduced zero).
        assert rank["skipped"]["unused.weight"] == "no gradient reached it"
        assert torch.equal(rank["params"]["unused.weight"], rank["reference"]["unused.weight"])


@pytest.mark.parametrize("case", ["fsdp_kernel", "fsdp_tensor"])
def test_fsdp2_matches_single_process(results: list[dict[str, Any]], case: str) -> None:
    ranks = _case(results, case)
    _assert_replicas_identical(ranks)
    for rank in ranks:
        assert rank["names"] == ["body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias"]
        _assert_matches_reference(rank)
        assert any(not torch.equal(rank["params"][n], rank["before"][n]) for n in rank["params"])
        for m, r in zip(rank["momentum"], rank["ref_momentum"], strict=True):
            torch.testing.assert_close(m, r, rtol=1e-5, atol=1e-6)
