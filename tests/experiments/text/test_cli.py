"""The command line: one-line refusals, a --quick run end to end, and ``python -m`` on the package."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from torch_dash_optim.experiments.text import QUICK, RECORD_FIELDS, main, read_corpus


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--methods", "dash,fire"], "unknown method fire; use some of cold,warm,sp,dash"),
        (["--methods", "dash,dash"], "names dash twice; give each method once"),
        (["--seeds", "1,1"], "names seed 1 twice"),
        (["--chunks", "0"], "chunks=0 must be an integer >= 1"),
        (["--jobs", "0"], "--jobs 0 must be >= 1"),
    ],
)
def test_the_command_line_refuses_bad_arguments_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as err:
        main(["--out", str(tmp_path / "out"), *argv])
    assert err.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing is created for a refused command



def test_quick_run_end_to_end_writes_the_results_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "text-quick"
    assert main(["--quick", "--out", str(out), "--jobs", "1"]) == 0
    for name in ("config.json", "records.csv", "records.json", "splits.json", "summary.json", "summary.md",
                 "provenance.json", "text-results.png"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "records.csv").open()))
    assert len(rows) == 2 * 4 * QUICK.chunks and list(rows[0]) == list(RECORD_FIELDS)
    data = json.loads((out / "records.json").read_text())
    assert data["corpus"]["sha256"] == read_corpus().sha256 and data["quick"] is True
    splits = json.loads((out / "splits.json").read_text())["splits"]
    assert [s["seed"] for s in splits] == [0, 1]
    summary = (out / "summary.md").read_text()
    assert "SMOKE RUN" in summary and "DASH − Warm:" in summary and "nats/byte" in summary
    last = json.loads((out / "summary.json").read_text())["last_stage"]
    assert [c["other"] for c in last] == ["cold", "warm", "sp"] and all(len(c["differences"]) == 2 for c in last)
    prov = json.loads((out / "provenance.json").read_text())["invocations"]
    assert len(prov) == 1 and prov[0]["cpu_seconds"] > 0 and prov[0]["python"] == data["corpus"]["python"]
    with pytest.raises(SystemExit) as err:  # an existing run is not overwritten silently
        main(["--quick", "--out", str(out)])
    assert err.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert main(["--quick", "--out", str(out), "--jobs", "1", "--no-plot", "--overwrite"]) == 0
    assert len(json.loads((out / "provenance.json").read_text())["invocations"]) == 1
    assert not (out / "text-results.png").exists()



def test_python_dash_m_runs_the_command_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "torch_dash_optim.experiments.text", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m torch_dash_optim.experiments.text") and "--quick" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "torch_dash_optim.experiments.text", "--out", str(tmp_path / "o"),
                           "--chunks", "0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "chunks=0 must be an integer >= 1" in proc.stderr
