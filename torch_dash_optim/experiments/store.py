"""Files under ``--out``: atomic writes, one JSON and one checkpoint per run, the CSV/JSON tables.

Layout::

    OUT/config.json                 settings of the whole run (checked on --resume)
    OUT/runs/<method>_<opt>_seed<s>.json   finished experiments of one run (+ "complete")
    OUT/runs/<method>_<opt>_seed<s>.pt     model/optimizer after its last finished experiment
    OUT/experiments.csv, .json      one row per (method, optimizer, seed, experiment)
    OUT/dash-factors.csv            DASH's factors per (optimizer, seed, experiment, layer kind)

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

__all__ = [
    "FACTOR_FIELDS",
    "CorruptRunError",
    "RECORD_FIELDS",
    "RunStore",
    "atomic_write",
    "factor_rows",
    "read_config",
    "saved_records",
    "write_config",
    "write_tables",
]

#: Columns of ``experiments.csv`` and keys of each record in ``experiments.json``.
#: ``data_seed`` is the seed the record's data were drawn with (``None`` for datasets given as
#: such); ``train_metric``/``test_metric`` hold a user's metric (``train_acc``/``test_acc`` are
#: then ``None``); ``dormant`` and ``feature_rank`` are the plasticity diagnostics after the
#: experiment, which took ``diagnostics_seconds`` of its ``seconds``.
RECORD_FIELDS: tuple[str, ...] = (
    "method",
    "optimizer",
    "seed",
    "data_seed",
    "experiment",
    "num_train",
    "epochs",
    "steps",
    "train_acc",
    "train_loss",
    "test_acc",
    "test_loss",
    "train_metric",
    "test_metric",
    "diverged",
    "dash_mean_factor",
    "dash_at_floor",
    "dormant",
    "feature_rank",
    "seconds",
    "cpu_seconds",
    "diagnostics_seconds",
)

#: Columns of ``dash-factors.csv``: DASH's factors of one experiment, per layer kind.
FACTOR_FIELDS: tuple[str, ...] = (
    "optimizer",
    "seed",
    "experiment",
    "kind",
    "units",
    "at_floor",
    "mean",
    "q10",
    "q25",
    "q50",
    "q75",
    "q90",
)


class CorruptRunError(ValueError):
    """A file of a results folder cannot be read (truncated, or not written by the harness).

    Examples
    --------
    >>> issubclass(CorruptRunError, ValueError)
    True
    """


def _read_json(path: Path, fix: str) -> Any:
    """Read a JSON file; one that cannot be parsed is a :class:`CorruptRunError` naming it and ``fix``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptRunError(f"{path} cannot be read ({err}); it is truncated or damaged: {fix}") from None


def atomic_write(path: Path, write: Callable[[io.IOBase], None] | str, binary: bool = False) -> None:
    """Write a file through a temporary name and ``os.replace`` (so it is never half-written).

    Parameters
    ----------
    path:
        The file to write; its folder is created if needed.
    write:
        The text to write, or a function given the open file that writes it.
    binary:
        Open the file in binary mode (for a ``write`` function that writes bytes); text is
        written as UTF-8 with newlines untranslated.

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

    Parameters
    ----------
    out:
        The run's output folder.
    config:
        The settings to save (JSON-serialisable).

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

    Parameters
    ----------
    out:
        The run's output folder.

    Returns
    -------
    dict of str to Any or None
        The saved settings, or ``None`` if the folder holds no ``config.json``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> read_config(pathlib.Path(tempfile.mkdtemp())) is None
    True
    """
    path = Path(out) / "config.json"
    if not path.exists():
        return None
    data = _read_json(path, "delete the folder, or start the run in another one")
    if not isinstance(data, dict):
        raise CorruptRunError(f"{path} holds no settings; delete the folder, or start the run in another one")
    return data


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
        self.json_path = Path(out) / "runs" / f"{method}_{optimizer}_seed{seed}.json"
        self.ckpt_path = self.json_path.with_suffix(".pt")

    @classmethod
    def of_file(cls, json_path: Path) -> RunStore:
        """The store whose run file is ``json_path``."""
        store = cls.__new__(cls)
        store.json_path, store.ckpt_path = Path(json_path), Path(json_path).with_suffix(".pt")
        return store

    def load_records(self) -> tuple[list[dict[str, Any]], bool]:
        """Return the run's finished records and whether the run is complete."""
        if not self.json_path.exists():
            return [], False
        fix = (
            f"delete it and resume: the run then restarts from {self.ckpt_path.name} if that exists, "
            "else from its first experiment"
        )
        data = _read_json(self.json_path, fix)
        if not (isinstance(data, dict) and isinstance(data.get("records"), list) and "complete" in data):
            raise CorruptRunError(f"{self.json_path} is not a run file of the harness (no records/complete); {fix}")
        return list(data["records"]), bool(data["complete"])

    def load_checkpoint(self) -> dict[str, Any] | None:
        """Return the saved state after the last finished experiment, or ``None``."""
        if not self.ckpt_path.exists():
            return None
        try:
            return torch.load(self.ckpt_path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise CorruptRunError(
                f"{self.ckpt_path} cannot be read ({type(err).__name__}); it is truncated or damaged: delete it "
                f"and {self.json_path.name}, and resume: that run restarts from its first experiment"
            ) from None

    def save(self, records: list[dict[str, Any]], state: dict[str, Any] | None) -> None:
        """Save the finished records, and the state to continue from (``None``: run complete).

        Both files are written atomically; when the run is complete, its checkpoint is removed.

        Parameters
        ----------
        records:
            Every finished experiment's record of this run so far.
        state:
            The state to continue from after the last finished experiment (saved with
            ``torch.save``), or ``None`` when the run is complete.
        """
        if state is not None:
            atomic_write(self.ckpt_path, lambda f: torch.save({**state, "records": records}, f), binary=True)
        body = json.dumps({"records": records, "complete": state is None}, indent=1) + "\n"
        atomic_write(self.json_path, body)
        if state is None and self.ckpt_path.exists():
            self.ckpt_path.unlink()


def saved_records(out: Path) -> list[dict[str, Any]]:
    """Return the records of every complete run saved under ``OUT/runs``, in file-name order.

    Parameters
    ----------
    out:
        The run's output folder.

    Returns
    -------
    list of dict
        The records of the runs whose file says they are complete.

    Raises
    ------
    CorruptRunError
        For a run file that cannot be read; the message names it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> RunStore(out, "warm", "sgd", 0).save([{"method": "warm", "experiment": 1}], None)
    >>> saved_records(out)
    [{'method': 'warm', 'experiment': 1}]
    """
    folder = Path(out) / "runs"
    if not folder.is_dir():
        return []
    records: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.json")):
        found, complete = RunStore.of_file(path).load_records()
        if complete:
            records += found
    return records


def factor_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the rows of ``dash-factors.csv``: one per DASH experiment and layer kind.

    Parameters
    ----------
    records:
        Experiment records; those without ``dash_factors`` give no row.

    Returns
    -------
    list of dict
        One row per record and layer kind, with the columns of ``dash-factors.csv``.

    Examples
    --------
    >>> rec = {"method": "dash", "optimizer": "sgd", "seed": 0, "experiment": 2,
    ...        "dash_factors": {"conv": {"units": 4, "at_floor": 0.25, "mean": 0.6}}}
    >>> factor_rows([rec])[0]["kind"], factor_rows([rec])[0]["at_floor"]
    ('conv', 0.25)
    """
    rows = []
    for r in records:
        for kind, stats in (r.get("dash_factors") or {}).items():
            row = {k: r.get(k) for k in FACTOR_FIELDS[:3]}
            row.update({"kind": kind, **{k: stats.get(k) for k in FACTOR_FIELDS[4:]}})
            rows.append(row)
    return rows


def write_tables(out: Path, records: Iterable[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Write ``experiments.csv``, ``dash-factors.csv`` and ``experiments.json`` (records plus ``meta``).

    Missing fields are left empty (``None`` in the JSON). The JSON records also hold
    ``dash_factors`` (per layer kind, with a histogram of the factors).

    Parameters
    ----------
    out:
        The run's output folder.
    records:
        The records of every experiment.
    meta:
        Extra top-level entries of ``experiments.json`` (``protocol``, ``setup``, ...).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> write_tables(out, [{"method": "warm", "experiment": 1}], {"protocol": {}})
    >>> (out / "experiments.csv").read_text().splitlines()[1]
    'warm,,,,1,,,,,,,,,,,,,,,,,'
    """
    records = list(records)
    for name, fields, rows in (
        ("experiments.csv", RECORD_FIELDS, [{k: r.get(k) for k in RECORD_FIELDS} for r in records]),
        ("dash-factors.csv", FACTOR_FIELDS, factor_rows(records)),
    ):
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(out / name, buffer.getvalue())
    full = [{**{k: r.get(k) for k in RECORD_FIELDS}, "dash_factors": r.get("dash_factors")} for r in records]
    atomic_write(out / "experiments.json", json.dumps({**meta, "records": full}, indent=1) + "\n")
