"""Files under ``--out``: atomic writes, one JSON and one checkpoint per run, the CSV/JSON tables.

Layout::

    OUT/config.json                 settings of the whole run (checked on --resume)
    OUT/runs/<method>_<opt>_seed<s>.json   finished experiments of one run (+ "complete")
    OUT/runs/<method>_<opt>_seed<s>.pt     model/optimizer after its last finished experiment
    OUT/experiments.csv, .json      one row per (method, optimizer, seed, experiment)

Every file is written to a temporary name and renamed, so a crash leaves either the old or
the new version. The checkpoint is written before the run's JSON and removed only after the
JSON says the run is complete.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

__all__ = ["RECORD_FIELDS", "RunStore", "atomic_write", "read_config", "write_config", "write_tables"]

#: Columns of ``experiments.csv`` and keys of each record in ``experiments.json``.
RECORD_FIELDS: tuple[str, ...] = (
    "method",
    "optimizer",
    "seed",
    "experiment",
    "num_train",
    "epochs",
    "steps",
    "train_acc",
    "train_loss",
    "test_acc",
    "test_loss",
    "diverged",
    "dash_mean_factor",
    "seconds",
)


def atomic_write(path: Path, write: Callable[[io.IOBase], None] | str, binary: bool = False) -> None:
    """Write a file through a temporary name and ``os.replace`` (so it is never half-written).

    ``write`` is the text to write, or a function given the open file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> atomic_write(path, "hello")
    >>> path.read_text()
    'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(
            tmp, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})
        ) as f:
            if isinstance(write, str):
                f.write(write)
            else:
                write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_config(out: Path, config: dict[str, Any]) -> None:
    """Write ``OUT/config.json``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> write_config(out, {"protocol": {"lr": 0.01}})
    >>> read_config(out)
    {'protocol': {'lr': 0.01}}
    """
    atomic_write(out / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")


def read_config(out: Path) -> dict[str, Any] | None:
    """Return ``OUT/config.json``, or ``None`` if there is none.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> read_config(pathlib.Path(tempfile.mkdtemp())) is None
    True
    """
    path = out / "config.json"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


class RunStore:
    """The files of one run (one method, optimizer and seed) under ``OUT/runs``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> store = RunStore(pathlib.Path(tempfile.mkdtemp()), "dash", "sgd", 0)
    >>> store.load_records()
    ([], False)
    """

    def __init__(self, out: Path, method: str, optimizer: str, seed: int) -> None:
        stem = f"{method}_{optimizer}_seed{seed}"
        self.json_path = Path(out) / "runs" / f"{stem}.json"
        self.ckpt_path = Path(out) / "runs" / f"{stem}.pt"

    def load_records(self) -> tuple[list[dict[str, Any]], bool]:
        """Return the run's finished records and whether the run is complete."""
        if not self.json_path.exists():
            return [], False
        data = json.loads(self.json_path.read_text(encoding="utf-8"))
        return list(data["records"]), bool(data["complete"])

    def load_checkpoint(self) -> dict[str, Any] | None:
        """Return the saved state after the last finished experiment, or ``None``."""
        if not self.ckpt_path.exists():
            return None
        return torch.load(self.ckpt_path, map_location="cpu", weights_only=True)

    def save(self, records: list[dict[str, Any]], state: dict[str, Any] | None) -> None:
        """Save the finished records, and the state to continue from (``None``: run complete)."""
        if state is not None:
            atomic_write(self.ckpt_path, lambda f: torch.save({**state, "records": records}, f), binary=True)
        body = json.dumps({"records": records, "complete": state is None}, indent=1) + "\n"
        atomic_write(self.json_path, body)
        if state is None and self.ckpt_path.exists():
            self.ckpt_path.unlink()


def write_tables(out: Path, records: Iterable[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Write ``experiments.csv`` and ``experiments.json`` (records plus ``meta``).

    Missing fields are left empty (``None`` in the JSON).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> write_tables(out, [{"method": "warm", "experiment": 1}], {"protocol": {}})
    >>> (out / "experiments.csv").read_text().splitlines()[1]
    'warm,,,1,,,,,,,,,,'
    """
    records = [{k: r.get(k) for k in RECORD_FIELDS} for r in records]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RECORD_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    atomic_write(out / "experiments.csv", buffer.getvalue())
    atomic_write(out / "experiments.json", json.dumps({**meta, "records": records}, indent=1) + "\n")
