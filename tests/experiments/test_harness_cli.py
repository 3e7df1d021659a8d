"""The command line: a tiny run writes every output; bad arguments get clear messages."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from torch_dash_optim.experiments.cli import main

TINY = [
    "--train-size",
    "60",
    "--chunks",
    "2",
    "--model",
    "mlp",
    "--width",
    "8",
    "--depth",
    "2",
    "--max-epochs",
    "2",
    "--no-progress",
    "--threads",
    "1",
]


def test_a_tiny_run_writes_summary_tables_and_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "res"
    assert (
        main(
            [
                *TINY,
                "--methods",
                "warm,cold,dash",
                "--optimizers",
                "sgd,sam",
                "--seeds",
                "0,1",
                "--jobs",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| DASH |" in printed and "SAM" in printed and "DASH's factors per layer kind" in printed
    summary = (out / "summary.md").read_text()
    assert "Test acc at last experiment (%), SGD" in summary and "dash-warmstart" in summary
    with open(out / "experiments.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 2 * 2 * 2
    setup = json.loads((out / "experiments.json").read_text())["setup"]
    assert setup == {
        "dataset": "mnist1d",
        "train_size": 60,
        "model": "mlp",
        "width": 8,
        "depth": 2,
        "mlp_bn": False,
    }
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "dash-factors.csv", newline="") as f:
        factors = list(csv.DictReader(f))
    assert {(r["optimizer"], r["kind"]) for r in factors} == {
        (o, k) for o in ("sgd", "sam") for k in ("linear", "bias")
    }
    assert len(factors) == 2 * 2 * 2  # optimizers x seeds x kinds, experiment 2 only
    (entry,) = json.loads((out / "provenance.json").read_text())["invocations"]
    assert entry["command"].startswith("dash-warmstart --train-size 60")
    assert entry["torch"] == torch.__version__ and entry["jobs"] == 2 and entry["threads"] == 1


def test_the_default_is_the_cnn_over_three_seeds_and_five_methods(tmp_path: Path) -> None:
    out = tmp_path / "res"
    argv = ["--train-size", "40", "--chunks", "2", "--max-epochs", "1", "--width", "4", "--no-progress",
            "--no-plot", "--jobs", "1", "--out", str(out)]
    assert main(argv) == 0
    data = json.loads((out / "experiments.json").read_text())
    assert data["setup"] == {"dataset": "mnist1d", "train_size": 40, "model": "cnn1d", "width": 4,
                             "kernels": [5, 3, 3]}
    runs = {(r["method"], r["seed"]) for r in data["records"]}
    assert runs == {(m, s) for m in ("cold", "warm", "sp", "fire", "dash") for s in (0, 1, 2)}


def test_resume_flag_continues_and_a_second_plain_run_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*TINY, "--methods", "warm", "--out", str(tmp_path), "--no-plot"]
    assert main(args) == 0
    with pytest.raises(SystemExit) as err:
        main(args)
    assert err.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.endswith("already holds results; add --resume to continue that run, or choose another --out")
    assert "resume=True" not in message
    assert main([*args, "--resume"]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--chunks", "1"], "--chunks 1 must be an integer >= 2"),
        (["--methods", "warm,magic"], "unknown method magic"),
        (["--optimizers", "adam"], "unknown optimizer adam"),
        (["--seeds", "a,b"], "comma-separated integers"),
        (["--seeds", "0,0"], "'0,0' names seed 0 twice; give each seed once"),
        (["--seeds", "-1,2"], "seeds must be integers >= 0, such as 0,1,2; got '-1,2'"),
        (["--methods", "dash,dash"], "'dash,dash' names dash twice; give each method once"),
        (["--lr", "-1"], "--lr -1.0 must be a number > 0, such as 0.01"),
        (["--threshold", "2"], "--threshold 2.0 must be a train accuracy"),
        (["--data-dir", "/tmp"], "mnist1d is generated locally: drop --data-dir"),
        (["--jobs", "0"], "--jobs 0 must be >= 1"),
        (["--kernels", "3,0"], "kernels must be comma-separated sizes >= 1"),
        (["--model", "mlp", "--kernels", "3"], "--kernels is a setting of --model cnn1d"),
        (["--dataset", "cifar10"], "pass --data-dir DIR"),
        (["--dataset", "svhn", "--data-dir", "/nonexistent/dir"], "is not a folder"),
        (["--train-size", "999999"], "--train-size 999999 must be in 1..8000"),
        (["--model", "resnet18"], "needs image inputs"),
        (["--model", "cnn1d", "--dataset", "svhn", "--data-dir", "/nonexistent/dir"], "is not a folder"),
        (["--seed", "1", "--seeds", "1,2"], "not allowed with argument"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as err:
        main([*argv, "--out", str(tmp_path)])
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert message in lines[-1] and lines[-1].startswith("dash-warmstart: error: ")
    assert not any("Traceback" in line for line in lines)


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("/proc/nope", "--out /proc/nope cannot be written (no such file or directory); choose a writable folder"),
        ("/etc/passwd/sub", "--out /etc/passwd/sub cannot be written (not a directory); choose a writable folder"),
        ("AFILE", "is a file, not a folder; choose a folder path"),
        ("NOTHERE", "holds no run to continue (no config.json); drop --resume"),
    ],
)
def test_bad_output_folders_exit_2_with_one_line(
    out: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    path = {"AFILE": str(afile), "NOTHERE": str(tmp_path / "nothere")}.get(out, out)
    argv = ["--out", path] + (["--resume"] if out == "NOTHERE" else [])
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("dash-warmstart: error: ") and message in lines[-1]
    assert not any("Traceback" in line or "Errno" in line for line in lines)
    assert not (tmp_path / "nothere").exists()


def test_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as err:
        main(["--help"])
    assert err.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: warmstart-results)" in text
    assert "default: cold,warm,sp,fire,dash" in text and "(default 0,1,2)" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when no GPU is present")
def test_cuda_without_a_gpu_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--device", "cuda"])
    assert "torch sees no CUDA GPU" in capsys.readouterr().err


def test_module_entry_point_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "torch_dash_optim.experiments", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0
    assert "--resume" in result.stdout and "dash-warmstart" in result.stdout
