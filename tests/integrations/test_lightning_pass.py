"""The Lightning DASHCallback's pass: without augmentation (pass_transform), and include/exclude
forwarded to the wrapper."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader

from ._common import need

L = need("lightning.pytorch")
datasets = need("torchvision.datasets")
T = need("torchvision.transforms")
from torch_dash_optim import DASHWrapper  # noqa: E402
from torch_dash_optim.integrations.lightning import DASHCallback  # noqa: E402

from .test_lightning_figures import Data, Net, _chunk, _grow_and_fit, _trainer  # noqa: E402


class Images(L.LightningModule):
    """A linear classifier of 3x4x4 images; the pass's batches are recorded."""

    def __init__(self, record: list) -> None:
        super().__init__()
        self.fc = nn.Linear(48, 3)
        self.record = record

    def forward(self, x):
        return self.fc(x.flatten(1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        def batch_loss(model, batch):
            self.record.append(batch[0].clone())
            return nn.functional.cross_entropy(model(batch[0]), batch[1])

        return DASHWrapper(torch.optim.SGD(self.parameters(), lr=0.1), model=self, batch_loss=batch_loss)


def _fake(n: int, offset: int, transform):
    return datasets.FakeData(size=n, image_size=(3, 4, 4), num_classes=3, transform=transform, random_offset=offset)


AUGMENT = T.Compose([T.ToTensor(), T.RandomHorizontalFlip(p=1.0)])  # an augmentation that always acts


class ImageData(L.LightningDataModule):
    def __init__(self) -> None:
        super().__init__()
        self.chunks = [_fake(8, 0, AUGMENT)]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(ConcatDataset(self.chunks), batch_size=4, shuffle=True)


def _run(tmp_path, callback: DASHCallback) -> tuple[list, ImageData]:
    record: list = []
    data, model = ImageData(), Images(record)
    trainer = _trainer(tmp_path, 1, [callback], False)
    trainer.fit(model, data)
    data.chunks.append(_fake(4, 100, AUGMENT))
    trainer.fit_loop.max_epochs = 2
    trainer.fit(model, data)
    return record, data


def _plain(data: ImageData) -> torch.Tensor:
    """Every image of the grown data, in order, without augmentation."""
    return torch.stack([_unaugmented(chunk, i) for chunk in data.chunks for i in range(len(chunk))])


def _unaugmented(chunk, i: int) -> torch.Tensor:
    saved, chunk.transform = chunk.transform, T.ToTensor()
    try:
        return chunk[i][0]
    finally:
        chunk.transform = saved


def test_by_default_the_pass_replays_the_training_augmentation(tmp_path):
    record, data = _run(tmp_path, DASHCallback())
    torch.testing.assert_close(torch.cat(record), _plain(data).flip(-1))


def test_pass_transform_reads_the_data_without_augmentation_and_leaves_the_training_set_alone(tmp_path):
    record, data = _run(tmp_path, DASHCallback(pass_transform=T.ToTensor()))
    torch.testing.assert_close(torch.cat(record), _plain(data))  # every example once, in order, unflipped
    assert all(chunk.transform is AUGMENT for chunk in data.chunks)


def test_pass_transform_hands_the_copy_to_pass_loader(tmp_path):
    got: list = []

    def pass_loader(dataset):
        got.append(dataset)
        return DataLoader(dataset, batch_size=12, shuffle=False)

    record, data = _run(tmp_path, DASHCallback(pass_transform=T.ToTensor(), pass_loader=pass_loader))
    assert len(record) == 1 and got[0].datasets[0] is not data.chunks[0]
    torch.testing.assert_close(record[0], _plain(data))


def test_pass_transform_on_data_without_a_transform_is_refused_before_anything_changed(tmp_path):
    callback = DASHCallback(pass_transform=T.ToTensor())
    data, model = Data(_chunk(0, 32)), Net()
    trainer = _trainer(tmp_path, 1, [callback], False)
    trainer.fit(model, data)
    data.chunks.append(_chunk(1, 16))
    state = copy.deepcopy(model.state_dict())
    trainer.fit_loop.max_epochs = 2
    with pytest.raises(TypeError, match=r"found no transform to replace .* TensorDataset has no 'transform'"):
        trainer.fit(model, data)
    assert callback.reports == [] and trainer.optimizers[0].num_dash_calls == 0
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_include_and_exclude_reach_on_new_data_only_when_set(tmp_path, monkeypatch):
    seen: list[dict] = []
    original = DASHWrapper.on_new_data

    def spy(self, loader, **kwargs):
        seen.append(kwargs)
        kwargs = {k: v for k, v in kwargs.items() if k not in ("include", "exclude")}
        return original(self, loader, **kwargs)

    monkeypatch.setattr(DASHWrapper, "on_new_data", spy)
    _grow_and_fit(tmp_path / "a", DASHCallback())
    _grow_and_fit(tmp_path / "b", DASHCallback(include="net.2.*"))
    _grow_and_fit(tmp_path / "c", DASHCallback(exclude=["*.bias"], include=["net.*"]))
    assert [sorted(k for k in kw if k in ("include", "exclude")) for kw in seen] == [
        [], ["include"], ["exclude", "include"]
    ]
    assert seen[1]["include"] == "net.2.*" and seen[2]["exclude"] == ["*.bias"]


def test_include_and_exclude_choose_the_parameters_shrunk(tmp_path):
    callback = DASHCallback(include=["net.*.weight"], exclude=["net.0.*"])
    _grow_and_fit(tmp_path, callback)
    [report] = callback.reports
    assert [p.name for p in report.params] == ["net.2.weight"]
    assert callback.metrics.keys() >= {"dash/mean_factor/net.2.weight"}
    assert not any("net.0" in key or "bias" in key for key in callback.metrics)
