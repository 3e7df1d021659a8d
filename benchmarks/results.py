"""Result records, the machine description, and JSON / markdown output."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["Result", "Run", "commit", "machine"]


@dataclass
class Result:
    """One figure of the benchmark.

    Attributes
    ----------
    section:
        Which benchmark (``"gather"``, ``"memory"``, ``"shrink"``, ``"step"``, ``"scaling"``, ``"gpu"``).
    name:
        What was measured, e.g. ``"resnet18: on_new_data / floor"``.
    value:
        The number.
    unit:
        ``"x"`` for a ratio, ``"s"``, ``"us/Mparam"``, ``"x param bytes"``, ...
    goal:
        The goal as text (``"<= 1.05"``), or ``""`` for a figure without one.
    holds:
        Whether the goal holds (``None`` without a goal).
    note:
        Anything needed to read the figure.
    key:
        A stable identifier (``"gather/mlp/ratio"``) for the renderers of published tables.

    Examples
    --------
    >>> Result("step", "sgd", 1.01, "x", "<= 1.02", True).holds
    True
    """

    section: str
    name: str
    value: float
    unit: str
    goal: str = ""
    holds: bool | None = None
    note: str = ""
    key: str = ""


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown"


def commit() -> str:
    """The git commit of the checkout, with ``+uncommitted`` when the tree has changes.

    Examples
    --------
    >>> isinstance(commit(), str)
    True
    """
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=10, cwd=root
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=root,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+uncommitted" if dirty else "")


def machine(device: str = "cpu") -> dict[str, Any]:
    """Describe the machine: CPU model, cores, torch version and threads, GPU if used.

    Examples
    --------
    >>> "torch" in machine()
    True
    """
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "commit": commit(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


@dataclass
class Run:
    """All results of one run, with the machine and the command.

    Examples
    --------
    >>> run = Run(command="python -m benchmarks --quick", machine={"cpu": "x"})
    >>> run.add(Result("step", "sgd", 1.0, "x", "<= 1.02", True))
    >>> "| step | sgd |" in run.markdown()
    True
    """

    command: str
    machine: dict[str, Any]
    results: list[Result] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, result: Result) -> None:
        """Append a result."""
        self.results.append(result)

    def to_json(self) -> str:
        """The run as JSON."""
        return json.dumps(
            {
                "command": self.command,
                "machine": self.machine,
                "seconds": self.seconds,
                "results": [asdict(r) for r in self.results],
            },
            indent=2,
        )

    def csv(self) -> str:
        """The results as CSV (one row per result, the columns of :class:`Result`)."""
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(Result.__dataclass_fields__), lineterminator="\n")
        writer.writeheader()
        for r in self.results:
            writer.writerow(asdict(r))
        return out.getvalue()

    def write_folder(self, folder: str | Path) -> list[Path]:
        """Write ``results.json``, ``results.csv`` and ``results.md`` into ``folder``; return the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, text in (
            ("results.json", self.to_json()),
            ("results.csv", self.csv()),
            ("results.md", self.markdown()),
        ):
            path = folder / name
            path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
            paths.append(path)
        return paths

    @classmethod
    def load(cls, path: str | Path) -> Run:
        """Read a run written by :meth:`to_json` (a file, or a folder holding ``results.json``)."""
        path = Path(path)
        if path.is_dir():
            path = path / "results.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        fields = set(Result.__dataclass_fields__)
        results = [Result(**{k: v for k, v in r.items() if k in fields}) for r in data["results"]]
        return cls(data["command"], data["machine"], results, data.get("seconds", 0.0))

    def get(self, key: str) -> Result:
        """The result with ``key``; :class:`KeyError` naming the keys there are if none."""
        for r in self.results:
            if r.key == key:
                return r
        raise KeyError(f"no result with key {key!r}; keys: {', '.join(r.key for r in self.results if r.key)}")

    def markdown(self) -> str:
        """The run as a markdown table (one row per result)."""
        lines = [
            f"Command: `{self.command}`  ",
            "Machine: " + ", ".join(f"{k}={v}" for k, v in self.machine.items()) + "  ",
            f"Wall time of the run: {self.seconds:.0f} s",
            "",
            "| section | figure | value | unit | goal | holds | note |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in self.results:
            holds = "" if r.holds is None else ("yes" if r.holds else "**no**")
            lines.append(f"| {r.section} | {r.name} | {_fmt(r.value)} | {r.unit} | {r.goal} | {holds} | {r.note} |")
        return "\n".join(lines) + "\n"

    def rst(self) -> str:
        """The results as a reStructuredText ``list-table`` (for the docs)."""
        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 10 40 10 12 8 6 30",
            "",
            "   * - section",
            "     - figure",
            "     - value",
            "     - unit",
            "     - goal",
            "     - holds",
            "     - note",
        ]
        for r in self.results:
            holds = "" if r.holds is None else ("yes" if r.holds else "**no**")
            cells = [r.section, r.name, _fmt(r.value), r.unit, r.goal, holds, r.note]
            lines.append(f"   * - {_rst_cell(cells[0])}")
            for i, c in enumerate(cells[1:], 1):
                lines.append(f"     - {c if i == 5 and c else _rst_cell(c)}")
        return "\n".join(lines) + "\n"


def _rst_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*") if text else "\\-"


def _fmt(value: float) -> str:
    if value == 0 or 0.01 <= abs(value) < 1e5:
        return f"{value:.3f}"
    return f"{value:.3g}"
