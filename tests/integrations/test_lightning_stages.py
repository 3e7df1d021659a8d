"""DASHCallback with the real Lightning: one Trainer per data stage, true precisions, several
training loaders, manual optimization with two optimizers, and the pass's batch size."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, IterableDataset

from ._common import need

L = need("lightning.pytorch")
from torch_dash_optim import DASHWrapper  # noqa: E402
from torch_dash_optim.integrations.lightning import DASHCallback  # noqa: E402

from .test_lightning import Growing, Net  # noqa: E402


def _trainer(tmp_path, max_epochs: int, *callbacks, **kwargs) -> L.Trainer:
    kwargs.setdefault("limit_train_batches", 1)
    return L.Trainer(
        max_epochs=max_epochs, callbacks=list(callbacks), logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        accelerator="cpu", devices=1, num_sanity_val_steps=0, **kwargs,
    )


# -- item 8: a new Trainer and a new callback for each data stage ----------------------------------
def test_a_new_trainer_per_data_stage_shrinks_when_the_data_grew(tmp_path):
    dm, model = Growing(), Net()
    first = DASHCallback()
    _trainer(tmp_path, 1, first).fit(model, dm)
    assert first.reports == []
    dm.grow()
    second = DASHCallback()  # a new Trainer and a new callback, the same module
    _trainer(tmp_path, 1, second).fit(model, dm)
    assert [r.num_batches for r in second.reports] == [3]  # 48 examples in batches of 16
    third = DASHCallback()  # the same data again: no call
    _trainer(tmp_path, 1, third).fit(model, dm)
    assert third.reports == [] and third.state_dict() == {"seen": 48}


def test_a_module_restored_without_the_callbacks_state_warns_or_takes_seen(tmp_path):
    dm, model = Growing(), Net()
    trainer = _trainer(tmp_path, 1)
    trainer.fit(model, dm)  # no DASHCallback: the checkpoint has no record of the data seen
    path = tmp_path / "plain.ckpt"
    trainer.save_checkpoint(path)
    dm.grow()
    blind = DASHCallback()
    with pytest.warns(UserWarning, match=r"cannot tell whether the training data grew.*seen=<size trained on>"):
        _trainer(tmp_path, 2, blind).fit(Net(), dm, ckpt_path=path)
    assert blind.reports == []
    told = DASHCallback(seen=32)
    _trainer(tmp_path, 2, told).fit(Net(), dm, ckpt_path=path)
    assert [r.call for r in told.reports] == [1]


# -- item 9: true precisions ------------------------------------------------------------------------
@pytest.mark.parametrize(("precision", "dtype"), [("bf16-true", torch.bfloat16), ("64-true", torch.float64)])
def test_true_precisions_convert_the_pass_batches(tmp_path, precision, dtype):
    record: list = []
    model, callback = Net(record), DASHCallback()
    callback.request()
    _trainer(tmp_path, 1, callback, precision=precision).fit(model, Growing())
    [report] = callback.reports
    assert report.num_batches == 2 and 0.1 <= report.mean_factor <= 1
    assert record and all(x.dtype == dtype and out == dtype for x, _, _, out in record)
    assert all(p.dtype == dtype for p in model.parameters())


# -- item 10: several training loaders ---------------------------------------------------------------
class TwoLoaders(Growing):
    def train_dataloader(self) -> dict[str, DataLoader]:
        return {"main": DataLoader(ConcatDataset(self.chunks), batch_size=16, shuffle=True),
                "aux": DataLoader(self._chunk(99, 8), batch_size=8)}


class DictNet(Net):
    def training_step(self, batch, batch_idx):
        return sum(super(DictNet, self).training_step(b, batch_idx) for b in batch.values())


def test_a_dict_of_loaders_fires_when_the_main_loader_grows(tmp_path):
    record: list = []
    dm, model = TwoLoaders(), DictNet(record)
    _trainer(tmp_path, 1, DASHCallback()).fit(model, dm)
    dm.grow()
    callback = DASHCallback()
    _trainer(tmp_path, 1, callback).fit(model, dm)
    [report] = callback.reports
    assert report.num_batches == 3  # the main loader's 48 examples, in order
    torch.testing.assert_close(torch.cat([x for x, *_ in record]), torch.cat([c.tensors[0] for c in dm.chunks]))

    class NoLoss(DictNet):
        def configure_optimizers(self):
            return DASHWrapper(torch.optim.SGD(self.parameters(), lr=0.1), model=self)

    with pytest.raises(ValueError, match=r"2 loaders.*main one \(training loader 'main'\).*batch_loss=fn"):
        _trainer(tmp_path, 1, DASHCallback()).fit(NoLoss(), dm)
    with pytest.raises(ValueError, match=r"main_loader='other'\) is not a key.*\['main', 'aux'\]"):
        _trainer(tmp_path, 1, DASHCallback(main_loader="other")).fit(DictNet(), dm)


class Stream(IterableDataset):
    def __iter__(self):
        g = torch.Generator().manual_seed(0)
        for _ in range(16):
            yield torch.randn(4, generator=g), torch.randint(0, 3, (), generator=g)


def test_a_loader_without_a_sized_dataset_warns_that_growth_cannot_be_seen(tmp_path):
    with pytest.warns(UserWarning, match=r"cannot see whether the training data grows.*IterableDataset|Stream"):
        _trainer(tmp_path, 1, DASHCallback()).fit(Net(), DataLoader(Stream(), batch_size=8))


# -- item 11: manual optimization with two optimizers ----------------------------------------------
class Gan(L.LightningModule):
    """A generator (wrapped in DASH) and a discriminator (Adam), both stepped in training_step."""

    def __init__(self, loss: str | None = None) -> None:
        super().__init__()
        self.automatic_optimization = False
        torch.manual_seed(0)
        self.gen = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4))
        self.disc = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        self.loss = loss

    def gen_loss(self, x):
        score = self.disc(self.gen(x))
        return nn.functional.binary_cross_entropy_with_logits(score, torch.ones_like(score))

    def training_step(self, batch, batch_idx):
        x, _ = batch
        opt_g, opt_d = self.optimizers()
        real, fake = self.disc(x), self.disc(self.gen(x).detach())
        d_loss = (nn.functional.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                  + nn.functional.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        opt_g.zero_grad()
        self.manual_backward(self.gen_loss(x))
        opt_g.step()

    def configure_optimizers(self):
        losses = {"steps": lambda model, batch: self.training_step(batch, 0),
                  "gen": lambda model, batch: self.gen_loss(batch[0]), None: None}
        gen = DASHWrapper(torch.optim.SGD(self.gen.parameters(), lr=0.1, momentum=0.9), model=self.gen,
                          batch_loss=losses[self.loss])
        return gen, torch.optim.Adam(self.disc.parameters(), lr=0.01)


class Snapshot(L.Callback):
    """Weights, grads and the discriminator's Adam state at the first epoch start (after DASH's)."""

    def on_train_epoch_start(self, trainer, pl_module):
        self.weights = {k: v.clone() for k, v in pl_module.state_dict().items()}
        self.grads = {n: None if p.grad is None else p.grad.clone() for n, p in pl_module.disc.named_parameters()}
        self.adam = copy.deepcopy(trainer.optimizers[1].state_dict())


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            _assert_same(a[key], b[key])
        elif isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


@pytest.fixture(scope="module")
def gan_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("gan")
    trainer = _trainer(out, 1, limit_train_batches=2)
    trainer.fit(Gan(), Growing())
    path = out / "gan.ckpt"
    trainer.save_checkpoint(path)
    return path, torch.load(path, weights_only=False)


def test_manual_optimization_without_a_loss_is_refused_before_anything_changes(tmp_path, gan_checkpoint):
    path, ckpt = gan_checkpoint
    model, callback = Gan(), DASHCallback()
    callback.request()
    trainer = _trainer(tmp_path, 2, callback)
    with pytest.raises(ValueError, match=r"Gan uses manual optimization.*nothing was changed.*batch_loss=fn"):
        trainer.fit(model, Growing(), ckpt_path=path)
    _assert_same(model.state_dict(), ckpt["state_dict"])
    _assert_same(trainer.optimizers[1].state_dict()["state"], ckpt["optimizer_states"][1]["state"])


def test_a_pass_loss_that_steps_the_optimizers_is_refused_and_changes_nothing(tmp_path, gan_checkpoint):
    path, ckpt = gan_checkpoint
    model, callback = Gan(loss="steps"), DASHCallback(log_factors=False)
    callback.request()
    trainer = _trainer(tmp_path, 2, callback)
    with pytest.raises(RuntimeError, match=r"tried to step optimizer 1 \(Adam\)") as info:
        trainer.fit(model, Growing(), ckpt_path=path)
    assert "were left as they were" in "".join(getattr(info.value, "__notes__", []))  # and it holds:
    _assert_same(model.state_dict(), ckpt["state_dict"])
    _assert_same(trainer.optimizers[1].state_dict()["state"], ckpt["optimizer_states"][1]["state"])
    _assert_same(trainer.optimizers[0].state_dict()["state"], ckpt["optimizer_states"][0]["state"])


def test_manual_optimization_with_a_batch_loss_shrinks_without_stepping_the_other_optimizer(tmp_path, gan_checkpoint):
    path, ckpt = gan_checkpoint
    model, callback, snapshot = Gan(loss="gen"), DASHCallback(log_factors=False), Snapshot()
    callback.request()
    _trainer(tmp_path, 2, callback, snapshot).fit(model, Growing(), ckpt_path=path)
    [report] = callback.reports
    assert [p.name for p in report.params] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    disc = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("disc.")}
    _assert_same({k: v for k, v in snapshot.weights.items() if k.startswith("disc.")}, disc)
    _assert_same(snapshot.adam["state"], ckpt["optimizer_states"][1]["state"])
    assert any(not torch.equal(snapshot.weights[k], v) for k, v in ckpt["state_dict"].items() if k.startswith("gen."))


# -- item 13: the pass's batch size -------------------------------------------------------------------
def test_the_pass_batch_size_defaults_to_the_training_loaders_and_can_be_set(tmp_path):
    dm, model = Growing(), Net()
    trainer = _trainer(tmp_path, 1, DASHCallback())
    trainer.fit(model, dm)
    dm.grow(8)  # 40 examples; the training loader's batches hold 16
    trainer.fit_loop._combined_loader = None  # re-read the datamodule, as the next fit would
    trainer.fit_loop.setup_data()

    def batches(**options) -> int:
        callback = DASHCallback(log_factors=False, **options)
        return callback.run(trainer, model, grown_by=8).num_batches

    assert batches() == 3  # the default: the training loader's 16
    assert batches(batch_size="chunk") == 5  # one batch per chunk of 8 new examples
    assert batches(batch_size=20) == 2
    assert batches(pass_loader=lambda dataset: DataLoader(dataset, batch_size=40)) == 1
    with pytest.raises(ValueError, match="batch_size must be a positive int, 'chunk' or None; got 0"):
        DASHCallback(batch_size=0)
    with pytest.raises(ValueError, match="give batch_size or pass_loader, not both"):
        DASHCallback(batch_size=8, pass_loader=lambda dataset: dataset)
