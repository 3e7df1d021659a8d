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
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| DASH |" in printed and "SAM" in printed
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


def test_resume_flag_continues_and_a_second_plain_run_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*TINY, "--methods", "warm", "--out", str(tmp_path), "--no-plot"]
    assert main(args) == 0
    with pytest.raises(SystemExit) as err:
        main(args)
    assert err.value.code == 2
    assert "already holds results; pass --resume" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--chunks", "1"], "--chunks 1 must be an integer >= 2"),
        (["--methods", "warm,magic"], "unknown method magic"),
        (["--optimizers", "adam"], "unknown optimizer adam"),
        (["--seeds", "a,b"], "comma-separated integers"),
        (["--lr", "-1"], "lr=-1.0 must be a number > 0"),
        (["--threshold", "2"], "threshold=2.0"),
        (["--dataset", "cifar10"], "pass --data-dir DIR"),
        (["--dataset", "svhn", "--data-dir", "/nonexistent/dir"], "is not a folder"),
        (["--train-size", "999999"], "--train-size 999999 must be in 1..8000"),
        (["--model", "resnet18"], "needs image inputs"),
        (["--seed", "1", "--seeds", "1,2"], "not allowed with argument"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as err:
        main([*argv, "--out", str(tmp_path)])
    assert err.value.code == 2
    assert message in capsys.readouterr().err


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
