"""The image path (torchvision data sets, ResNet-18, VGG-16-BN) on tiny fake data written here."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from torch_dash_optim.experiments import ProtocolConfig, run_protocol
from torch_dash_optim.experiments.cli import main
from torch_dash_optim.experiments.datasets import load_dataset
from torch_dash_optim.experiments.models import VGG16BN, build_model

tv = pytest.importorskip("torchvision")  # the optional [vision] extra


def _image_folder(root: Path, classes: list[str], per_class: int, size: int = 8) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / c / f"{i}.png")


def test_tiny_imagenet_image_folders_run_through_the_protocol(tmp_path: Path) -> None:
    base = tmp_path / "tiny-imagenet-200"
    _image_folder(base / "train", ["n01", "n02"], per_class=6)
    _image_folder(base / "val" / "images", ["n01", "n02"], per_class=2)
    data = load_dataset("tiny-imagenet", tmp_path)
    assert (len(data.train), len(data.test), data.input_shape, data.num_classes) == (12, 4, (3, 8, 8), 2)
    resnet = build_model("resnet18", data.input_shape, data.num_classes)()
    assert resnet.conv1.kernel_size == (3, 3) and resnet.conv1.stride == (1, 1)  # the CIFAR stem
    assert resnet(torch.stack([data.train[i][0] for i in range(3)])).shape == (3, 2)
    factory = build_model("mlp", data.input_shape, data.num_classes, width=8)  # fast; same data path
    records = run_protocol(
        data.train,
        data.test,
        factory,
        methods=["warm", "dash"],
        progress=False,
        config=ProtocolConfig(num_chunks=2, batch_size=4, max_epochs=1),
    )
    assert [r["num_train"] for r in records] == [6, 12, 6, 12]
    assert records[-1]["dash_mean_factor"] is not None


def test_tiny_imagenet_without_class_folders_is_explained(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match="ImageFolder trees"):
        load_dataset("tiny-imagenet", tmp_path)


def _fake_cifar10(root: Path, n_per_batch: int = 4) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {
            "data": rng.integers(0, 255, (n_per_batch, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, n_per_batch).tolist(),
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))


def test_cifar10_batches_load_as_normalised_tensors_and_run_from_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_cifar10(tmp_path)
    # The fake batches cannot match torchvision's md5 sums; everything else is the real reader.
    monkeypatch.setattr(tv.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    data = load_dataset("cifar10", tmp_path)
    assert (len(data.train), len(data.test), data.input_shape, data.num_classes) == (20, 4, (3, 32, 32), 10)
    x = data.train.tensors[0]
    assert x.dtype == torch.float32 and -3 < x.min() < 0 < x.max() < 3
    out = tmp_path / "out"
    assert (
        main(
            [
                "--dataset",
                "cifar10",
                "--data-dir",
                str(tmp_path),
                "--model",
                "mlp",
                "--width",
                "8",
                "--chunks",
                "2",
                "--max-epochs",
                "1",
                "--methods",
                "cold,sp",
                "--no-progress",
                "--no-plot",
                "--jobs",  # one process: worker processes read the data themselves, without this test's patch
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert (out / "experiments.csv").exists()


def test_missing_cifar_names_the_expected_layout(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py.*never downloads"):
        load_dataset("cifar10", tmp_path)


def test_missing_torchvision_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(ImportError, match=r"from the \"vision\" extra: pip install -e \"\.\[vision\]\""):
        load_dataset("cifar100", tmp_path)


def test_vgg16_bn_has_the_authors_layout() -> None:
    model = VGG16BN(10, width_divisor=16)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(convs) == 13 and len(bns) == 13
    assert len([m for m in model.classifier if isinstance(m, torch.nn.Linear)]) == 3
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_the_gpu_one_liner_uses_the_authors_preset_for_cifar10(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dash-warmstart --dataset cifar10 --data-dir DIR`` (``--device cuda`` on a GPU): ResNet-18, SGD lr 1e-3,
    50 chunks, 99.9% threshold. Only the chunks and epochs are cut here, so it runs on a CPU."""
    from torch_dash_optim.experiments.config import DATASET_PRESETS

    preset = DATASET_PRESETS["cifar10"]
    assert (preset["model"], preset["chunks"], preset["lr"], preset["max_epochs"]) == ("resnet18", 50, 0.001, 10000)
    _fake_cifar10(tmp_path)
    monkeypatch.setattr(tv.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    out = tmp_path / "out"
    argv = ["--dataset", "cifar10", "--data-dir", str(tmp_path), "--device", "cpu", "--chunks", "2",
            "--max-epochs", "1", "--methods", "dash", "--seed", "0", "--jobs", "1", "--no-progress",
            "--no-plot", "--out", str(out)]
    assert main(argv) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["setup"]["model"] == "resnet18"
    assert saved["protocol"]["lr"] == 0.001 and saved["protocol"]["threshold"] == 0.999
    assert saved["protocol"]["batch_size"] == 128 and saved["protocol"]["momentum"] == 0.9
    records = json.loads((out / "experiments.json").read_text())
    rows = records["records"] if isinstance(records, dict) else records
    assert [r["num_train"] for r in rows] == [10, 20]
    assert rows[-1]["dash_mean_factor"] is not None
