"""The text experiment: corpus, per-seed splits, the causal model, DASH on it, and a --quick run end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from torch_dash_optim import DASHWrapper
from torch_dash_optim.experiments import text
from torch_dash_optim.experiments.text import (
    QUICK,
    CausalLM,
    Corpus,
    TextConfig,
    compare_last,
    draw_split,
    next_token_loss,
    read_corpus,
    run_text,
    windows,
)

SMALL = TextConfig(chunks=2, train_bytes=600, heldout_bytes=300, segment_bytes=100, context=8, width=8, heads=2,
                   layers=1, batch_size=8, epochs=1)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Twelve .py files of distinct text, an empty one, a sub-package and a non-.py file."""
    for i in range(12):
        (tmp_path / f"mod{i:02d}.py").write_bytes(f"# module {i}\n".encode() + bytes([65 + i]) * 300)
    (tmp_path / "empty.py").write_bytes(b"")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "inner.py").write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("not python\n")
    return tmp_path


# --------------------------------------------------------------------------- corpus and splits


def test_the_stdlib_corpus_is_read_the_same_way_twice() -> None:
    a, b = read_corpus(), read_corpus()
    assert a.names == b.names == tuple(sorted(a.names))
    assert a.sha256 == b.sha256 and a.texts == b.texts
    assert "os.py" in a.names and all(n.endswith(".py") and "/" not in n for n in a.names)
    assert a.describe()["files"] == len(a.names) and a.describe()["python"] == a.python


def test_only_top_level_non_empty_py_files_are_read_sorted(folder: Path) -> None:
    corpus = read_corpus(folder)
    assert corpus.names == tuple(f"mod{i:02d}.py" for i in range(12))
    assert corpus.texts[3] == (folder / "mod03.py").read_bytes()


def test_the_hash_changes_with_a_file_and_names_which_text_was_used(folder: Path) -> None:
    before = read_corpus(folder).sha256
    (folder / "mod05.py").write_bytes(b"# changed\n" * 10)
    assert read_corpus(folder).sha256 != before
    # the same bytes under another split of names is another corpus
    one, other = Corpus.from_texts({"a.py": b"xy", "b.py": b"z"}), Corpus.from_texts({"a.py": b"x", "b.py": b"yz"})
    assert one.sha256 != other.sha256


def test_a_folder_without_python_files_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no non-empty .py file"):
        read_corpus(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        read_corpus(tmp_path / "missing")


def test_a_split_is_deterministic_per_seed_and_differs_between_seeds(folder: Path) -> None:
    corpus = read_corpus(folder)
    a, b, c = draw_split(corpus, 3, SMALL), draw_split(corpus, 3, SMALL), draw_split(corpus, 4, SMALL)
    assert a == b
    assert (a.heldout_segments, a.train_segments) != (c.heldout_segments, c.train_segments)


@pytest.mark.parametrize("seed", range(6))
def test_held_out_files_are_never_trained_on_and_the_budgets_are_exact(folder: Path, seed: int) -> None:
    corpus = read_corpus(folder)
    split = draw_split(corpus, seed, SMALL)
    assert not set(split.heldout_files) & set(split.train_files)
    assert len(split.train) == SMALL.train_bytes and len(split.heldout) == SMALL.heldout_bytes
    texts = dict(zip(corpus.names, corpus.texts))
    rebuilt = b"".join(texts[n][o : o + k] for n, o, k in split.train_segments)
    assert rebuilt == split.train and all(k <= SMALL.segment_bytes for *_, k in split.train_segments)
    # every held-out byte comes from held-out files only: each file's letter appears on one side
    letters = {bytes([65 + int(n[3:5])]) for n in split.heldout_files}
    assert all(letter not in split.train for letter in letters)


def test_the_stdlib_split_holds_out_whole_files() -> None:
    split = draw_split(read_corpus(), 0, TextConfig())
    assert not set(split.heldout_files) & set(split.train_files)
    assert len(split.train) == TextConfig().train_bytes and len(split.heldout) == TextConfig().heldout_bytes
    assert [len(c) for c in split.chunks(4)] == [TextConfig().train_bytes // 4] * 4


def test_a_corpus_too_small_for_the_budgets_is_refused(folder: Path) -> None:
    with pytest.raises(ValueError, match="too small"):
        draw_split(read_corpus(folder), 0, TextConfig(train_bytes=10_000, heldout_bytes=500, segment_bytes=100,
                                                       context=8))


def test_windows_are_disjoint_byte_tokens() -> None:
    w = windows(bytes(range(20)), 4)
    assert w.dtype == torch.long and w.shape == (4, 5)
    assert w.flatten().tolist() == list(range(20))


# --------------------------------------------------------------------------- the model


def test_model_shapes_and_layers() -> None:
    model = CausalLM(context=12, width=16, heads=4, layers=2)
    assert model(torch.randint(0, 256, (3, 12))).shape == (3, 12, 256)
    assert model(torch.randint(0, 256, (3, 5))).shape == (3, 5, 256)
    attn = model.blocks[0].attn
    assert all(isinstance(getattr(attn, n), nn.Linear) for n in ("q", "k", "v", "out"))
    assert model.head.weight.data_ptr() != model.tok.weight.data_ptr()  # untied
    assert not any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
    with pytest.raises(ValueError, match="longer than the model's context=12"):
        model(torch.randint(0, 256, (1, 13)))


def test_a_later_token_never_changes_an_earlier_position() -> None:
    torch.manual_seed(0)
    model = CausalLM(context=10, width=16, heads=2, layers=2).eval()
    x = torch.randint(0, 256, (2, 10))
    for j in (0, 4, 9):
        y = x.clone()
        y[:, j] = (y[:, j] + 1) % 256
        with torch.no_grad():
            a, b = model(x), model(y)
        assert torch.equal(a[:, :j], b[:, :j])  # positions before j see nothing of token j
        assert not torch.allclose(a[:, j:], b[:, j:])  # from j on, they do


def test_next_token_loss_predicts_the_following_byte() -> None:
    model = CausalLM(context=4, width=8, heads=2, layers=1)
    batch = torch.randint(0, 256, (3, 5))
    logits = model(batch[:, :4])
    want = nn.functional.cross_entropy(logits.reshape(-1, 256), batch[:, 1:].reshape(-1))
    assert torch.allclose(next_token_loss(model, batch), want)


def test_dash_shrinks_every_linear_layer_and_leaves_embeddings_and_norms_alone() -> None:
    torch.manual_seed(0)
    model = CausalLM(context=8, width=16, heads=2, layers=2)
    opt = DASHWrapper(torch.optim.AdamW(model.parameters(), lr=1e-2), model=model, batch_loss=next_token_loss)
    data = torch.randint(0, 256, (32, 9))
    for batch in data.split(8):  # train a little so the weights and the gradient are not at init
        opt.zero_grad()
        next_token_loss(model, batch).backward()
        opt.step()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    report = opt.on_new_data(list(data.split(8)))
    linear = {f"{n}.{p}" for n, m in model.named_modules() if isinstance(m, nn.Linear) for p in ("weight", "bias")}
    assert {p.name for p in report.params} == linear
    for block in ("blocks.0", "blocks.1"):
        assert {f"{block}.attn.{x}.weight" for x in ("q", "k", "v", "out")} <= linear
        assert {f"{block}.mlp.fc.weight", f"{block}.mlp.proj.weight"} <= linear
    assert "head.weight" in linear
    others = set(before) - linear
    assert others == {"tok.weight", "pos.weight", "ln_f.weight", "ln_f.bias"} | {
        f"blocks.{i}.{ln}.{p}" for i in (0, 1) for ln in ("ln1", "ln2") for p in ("weight", "bias")
    }
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], before[n]) for n in others)
    assert set(report.skipped) == others
    shrunk = [n for n in linear if not torch.equal(params[n], before[n])]
    assert "head.weight" in shrunk and len(shrunk) >= len(linear) // 2
    assert report.mean_factor < 1.0


# --------------------------------------------------------------------------- the protocol and the command


def test_methods_share_the_first_stage_and_differ_after(folder: Path) -> None:
    records = run_text(SMALL, seeds=[0], root=folder)
    first = {r["method"]: r["heldout_loss"] for r in records if r["stage"] == 1}
    last = {r["method"]: r["heldout_loss"] for r in records if r["stage"] == 2}
    assert len(set(first.values())) == 1 and set(first) == set(text.METHODS)
    assert len(set(last.values())) == 4  # cold, warm, S&P and DASH start stage 2 from different weights
    dash = [r for r in records if r["method"] == "dash"]
    assert dash[0]["dash_mean_factor"] is None and 0.3 <= dash[1]["dash_mean_factor"] <= 1.0
    assert [r["windows"] for r in dash] == [len(windows(b"x" * 300, 8)), 2 * len(windows(b"x" * 300, 8))]


def test_a_run_is_reproducible_and_does_not_touch_the_global_generator(folder: Path) -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = run_text(SMALL, seeds=[1], methods=["cold", "sp"], root=folder)
    assert torch.equal(torch.get_rng_state(), state)
    b = run_text(SMALL, seeds=[1], methods=["cold", "sp"], root=folder)
    strip = [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds")} for r in a]
    assert strip == [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds")} for r in b]


def test_bad_arguments_are_refused(folder: Path) -> None:
    with pytest.raises(ValueError, match="unknown method 'fire'; use some of cold, warm, sp, dash"):
        run_text(SMALL, seeds=[0], methods=["dash", "fire"], root=folder)
    with pytest.raises(ValueError, match=r"seeds \[0, 0\] lists one twice"):
        run_text(SMALL, seeds=[0, 0], root=folder)
    with pytest.raises(ValueError, match="jobs=0 must be an integer >= 1"):
        run_text(SMALL, seeds=[0], root=folder, jobs=0)
    with pytest.raises(ValueError, match="multiple of heads"):
        TextConfig(width=10, heads=4)
    with pytest.raises(TypeError, match="integer"):
        TextConfig(epochs=2.5)
    with pytest.raises(ValueError, match="shorter than one window"):
        TextConfig(train_bytes=100)


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
        text.main(["--out", str(tmp_path / "out"), *argv])
    assert err.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing is created for a refused command


def test_last_stage_verdicts_follow_the_interval() -> None:
    def recs(diffs: list[float]) -> list[dict]:
        return [r for s, d in enumerate(diffs) for r in (
            {"seed": s, "method": "dash", "stage": 3, "heldout_loss": 2.0 + d},
            {"seed": s, "method": "warm", "stage": 3, "heldout_loss": 2.0},
            {"seed": s, "method": "warm", "stage": 2, "heldout_loss": 9.0},  # earlier stages are ignored
        )]

    assert compare_last(recs([-0.1, -0.12, -0.09]))[0].verdict() == "DASH lower (better)"
    assert compare_last(recs([0.1, 0.12, 0.09]))[0].verdict() == "DASH higher (worse)"
    spanning = compare_last(recs([-0.1, 0.12, 0.01]))[0]
    assert spanning.verdict() == "not distinguishable" and spanning.interval.low < 0 < spanning.interval.high
    assert "not distinguishable (3 seeds)" in spanning.line()
    assert compare_last(recs([-0.1]))[0].verdict() == "one seed: no interval"


def test_quick_run_end_to_end_writes_the_results_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "text-quick"
    assert text.main(["--quick", "--out", str(out), "--jobs", "1"]) == 0
    for name in ("config.json", "records.csv", "records.json", "splits.json", "summary.json", "summary.md",
                 "provenance.json", "text-results.png"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "records.csv").open()))
    assert len(rows) == 2 * 4 * QUICK.chunks and list(rows[0]) == list(text.RECORD_FIELDS)
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
        text.main(["--quick", "--out", str(out)])
    assert err.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert text.main(["--quick", "--out", str(out), "--jobs", "1", "--no-plot", "--overwrite"]) == 0
    assert len(json.loads((out / "provenance.json").read_text())["invocations"]) == 1
    assert not (out / "text-results.png").exists()


def test_worker_processes_give_the_same_records(folder: Path) -> None:
    one = run_text(SMALL, seeds=[0], methods=["warm", "dash"], root=folder, jobs=1)
    two = run_text(SMALL, seeds=[0], methods=["warm", "dash"], root=folder, jobs=2)
    drop = ("seconds", "cpu_seconds")
    assert [{k: v for k, v in r.items() if k not in drop} for r in one] == [
        {k: v for k, v in r.items() if k not in drop} for r in two
    ]
