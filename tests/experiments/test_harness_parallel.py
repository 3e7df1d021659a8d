"""``jobs > 1``: runs in worker processes give the records of a sequential run, resume works, Ctrl-C stops."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from torch_dash_optim.experiments import ProtocolConfig, run_protocol
from torch_dash_optim.experiments import protocol as protocol_module
from torch_dash_optim.experiments.models import CNN1d

CONFIG = ProtocolConfig(num_chunks=3, lr=0.05, batch_size=16, max_epochs=3, threshold=0.95)
# A picklable factory (worker processes import it by name): the default model, tiny.
FACTORY = functools.partial(CNN1d, 12, 2, width=3, kernels=(3, 3))
KWARGS = dict(config=CONFIG, methods=["cold", "sp", "fire", "dash"], seeds=[0, 1], progress=False)


def _data() -> tuple[TensorDataset, TensorDataset]:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(120, 12, generator=g)
    y = (x[:, :3].sum(1) > 0).long()
    return TensorDataset(x[:90], y[:90]), TensorDataset(x[90:], y[90:])


def _strip(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds", "diagnostics_seconds")} for r in records]


@pytest.fixture(scope="module")
def sequential() -> list[dict]:
    return run_protocol(*_data(), FACTORY, **KWARGS)


def test_parallel_records_are_bit_identical_to_sequential(sequential: list[dict], tmp_path: Path) -> None:
    parallel = run_protocol(*_data(), FACTORY, jobs=2, out=tmp_path, **KWARGS)
    assert _strip(parallel) == _strip(sequential)  # floats compared exactly
    saved = json.loads((tmp_path / "experiments.json").read_text())["records"]
    assert [(r["method"], r["seed"], r["experiment"]) for r in saved] == [
        (r["method"], r["seed"], r["experiment"]) for r in sequential
    ]
    assert any(r["dash_factors"] for r in saved)


def test_parallel_resume_continues_a_crashed_run_exactly(
    sequential: list[dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real_evaluate = protocol_module.evaluate

    def crashing(*args: object, **kw: object) -> object:
        calls["n"] += 1
        if calls["n"] == 11:  # seed 0: cold, sp, fire done (9 experiments); dash's second one crashes
            raise KeyboardInterrupt
        return real_evaluate(*args, **kw)

    monkeypatch.setattr(protocol_module, "evaluate", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_protocol(*_data(), FACTORY, out=tmp_path, **KWARGS)
    assert (tmp_path / "runs" / "dash_sgd_seed0.pt").exists()
    monkeypatch.setattr(protocol_module, "evaluate", real_evaluate)
    resumed = run_protocol(*_data(), FACTORY, out=tmp_path, resume=True, jobs=2, **KWARGS)
    assert _strip(resumed) == _strip(sequential)
    assert not list((tmp_path / "runs").glob("*.pt"))
    assert len(json.loads((tmp_path / "experiments.json").read_text())["records"]) == len(sequential)


def test_jobs_need_a_picklable_factory_and_a_positive_count() -> None:
    with pytest.raises(ValueError, match="picklable model_factory.*use jobs=1"):
        run_protocol(*_data(), lambda: CNN1d(12, 2, width=3), jobs=2, **KWARGS)
    with pytest.raises(ValueError, match="jobs=0 must be an integer >= 1"):
        run_protocol(*_data(), FACTORY, jobs=0, **KWARGS)


INTERRUPTED = [
    "--dataset", "mnist1d", "--model", "mlp", "--width", "16", "--depth", "2", "--train-size", "400",
    "--chunks", "4", "--max-epochs", "20", "--methods", "cold,warm,sp,dash", "--seeds", "0,1",
    "--threads", "1", "--no-plot", "--no-progress",
]  # fmt: skip


FAULTHANDLER = dict(os.environ, PYTHONFAULTHANDLER="1")  # SIGABRT then prints every thread's stack


@contextlib.contextmanager
def _process_group(command: list[str]) -> Iterator[subprocess.Popen]:
    """Run ``command`` in a process group of its own, killed with its workers on leaving."""
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, env=FAULTHANDLER
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _stderr_or_stacks(proc: subprocess.Popen, timeout: float) -> str:
    """The process's stderr once it exits; if it hangs, fail with the stacks of its threads."""
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        if proc.poll() is None:
            proc.send_signal(signal.SIGABRT)  # faulthandler dumps the stacks, then the process dies
        with contextlib.suppress(ProcessLookupError):
            time.sleep(2)
            os.killpg(proc.pid, signal.SIGKILL)  # the workers too
        stderr = proc.communicate()[1]
        pytest.fail(f"the run did not exit within {timeout} s; its stderr and stacks:\n{stderr[-8000:]}")


def _complete_runs(out: Path) -> set[str]:
    done = set()
    for path in (out / "runs").glob("*.json") if (out / "runs").is_dir() else []:
        try:
            if json.loads(path.read_text())["complete"]:
                done.add(path.name)
        except (ValueError, OSError):  # being replaced right now
            pass
    return done


@pytest.mark.parametrize("when", ["while_workers_start", "after_a_run"])
def test_ctrl_c_with_two_jobs_stops_cleanly_and_resume_finishes(when: str, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole process group, twice) exits 130 with no traceback, keeping finished runs."""
    out = tmp_path / "res"
    command = [sys.executable, "-m", "torch_dash_optim.experiments", *INTERRUPTED, "--jobs", "2", "--out", str(out)]
    with _process_group(command) as proc:
        for _ in range(3000):  # until the workers start, or a run has finished (at most 5 minutes)
            started = (out / "config.json").exists() if when == "while_workers_start" else _complete_runs(out)
            if started or proc.poll() is not None:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be interrupted; give it more work"
        done = _complete_runs(out)
        assert done or when == "while_workers_start"
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the parent and its workers
        time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)  # and a second, impatient Ctrl-C
        stderr = _stderr_or_stacks(proc, timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted; finished experiments are saved" in stderr
    assert done <= _complete_runs(out)  # what had finished is kept
    assert not list((out / "runs").glob(".*.tmp*"))  # no half-written file left
    from torch_dash_optim.experiments.cli import main

    assert main([*INTERRUPTED, "--jobs", "1", "--out", str(out), "--resume"]) == 0
    records = json.loads((out / "experiments.json").read_text())["records"]
    assert len(records) == 4 * 2 * 4


# A Ctrl-C can land between any two bytecodes, so also between a lock's acquire and the code that
# gives it back. multiprocessing's Queue.put is such a place: a KeyboardInterrupt there kept the
# queue's lock, and the queue's finalizer then waited for it forever, after the "interrupted"
# message (seen in CI). This script makes the Ctrl-C arrive exactly there, in the parent only.
CTRL_C_INSIDE_A_LOCK = """
import signal
import sys
import multiprocessing.queues

real_put = multiprocessing.queues.Queue.put


def put(self, obj, block=True, timeout=None):
    real_put(self, obj, block, timeout)  # the first put starts the feeder thread and its finalizers
    self._notempty.acquire()  # as put() itself does, around its own work
    signal.raise_signal(signal.SIGINT)  # Ctrl-C while the queue's lock is held
    self._notempty.release()


if __name__ == "__main__":
    multiprocessing.queues.Queue.put = put
    from torch_dash_optim.experiments.cli import main

    sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_inside_a_multiprocessing_lock_still_exits(tmp_path: Path) -> None:
    """A Ctrl-C while the parent holds a queue's lock is recorded, acted on later, and the run exits 130."""
    script = tmp_path / "ctrl_c_inside_a_lock.py"
    script.write_text(CTRL_C_INSIDE_A_LOCK)
    out = tmp_path / "res"
    with _process_group([sys.executable, str(script), *INTERRUPTED, "--jobs", "2", "--out", str(out)]) as proc:
        stderr = _stderr_or_stacks(proc, timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted; finished experiments are saved" in stderr
    assert not list((out / "runs").glob(".*.tmp*"))
