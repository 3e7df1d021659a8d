"""The Lightning DASHCallback's figures in the user's logger: a real Trainer and a Logger that
records what it receives."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, TensorDataset

from ._common import need

L = need("lightning.pytorch")
from lightning.pytorch.loggers import Logger  # noqa: E402

from torch_dash_optim import DASHWrapper  # noqa: E402
from torch_dash_optim.diagnostics import diagnose  # noqa: E402
from torch_dash_optim.integrations.lightning import DASHCallback  # noqa: E402


class Recorder(Logger):
    """A logger that keeps every ``log_metrics`` call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int | None, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "recorder"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics, step=None) -> None:
        self.calls.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def received(self, prefix: str) -> dict[str, float]:
        """Every key under ``prefix`` received, with its last value."""
        out: dict[str, float] = {}
        for _, metrics in self.calls:
            out.update({k: v for k, v in metrics.items() if k.startswith(prefix)})
        return out


class Net(L.LightningModule):
    def __init__(self, record: list | None = None) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        self.record = record

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        def batch_loss(model, batch):
            x, y = batch
            if self.record is not None:
                self.record.append(x.detach().clone())
            return nn.functional.cross_entropy(model(x), y)

        return DASHWrapper(torch.optim.SGD(self.parameters(), lr=0.1), model=self, batch_loss=batch_loss, lambd=0.1)


def _chunk(seed: int, n: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g))


class Data(L.LightningDataModule):
    def __init__(self, *chunks) -> None:
        super().__init__()
        self.chunks = list(chunks)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(ConcatDataset(self.chunks), batch_size=16, shuffle=True)


def _trainer(tmp_path, epochs: int, callbacks: list, logger) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs, callbacks=callbacks, logger=logger, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        accelerator="cpu", devices=1, num_sanity_val_steps=0, log_every_n_steps=1,
    )


def _grow_and_fit(tmp_path, callback: DASHCallback, model: Net | None = None, first=()):
    """Train one epoch on 32 examples, grow to 48, start a second epoch; return what the logger got.

    ``first``: callbacks that run before ``callback`` at each hook."""
    data, model, logger = Data(_chunk(0, 32)), model or Net(), Recorder()
    trainer = _trainer(tmp_path, 1, [*first, callback], logger)
    trainer.fit(model, data)
    data.chunks.append(_chunk(1, 16))
    trainer.fit_loop.max_epochs = 2
    trainer.fit(model, data)
    return trainer, model, logger, data


def test_the_logger_receives_the_factor_statistics_per_parameter_and_overall(tmp_path):
    callback = DASHCallback()
    _, _, logger, _ = _grow_and_fit(tmp_path, callback)
    [report] = callback.reports
    got = logger.received("dash/")
    names = ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]
    assert [p.name for p in report.params] == names
    expected = {"dash/mean_factor": report.mean_factor, "dash/at_floor": report.at_floor,
                "dash/min_factor": min(p.min for p in report.params)}
    for p in report.params:
        expected |= {f"dash/mean_factor/{p.name}": p.mean, f"dash/min_factor/{p.name}": p.min,
                     f"dash/at_floor/{p.name}": p.at_floor}
    assert got.keys() == expected.keys()
    for key, value in expected.items():  # Lightning logs float32 tensors
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-7), key
    # An epoch-level value, received once, with the epoch that DASH started (the second).
    assert [m.get("epoch") for _, m in logger.calls if "dash/mean_factor" in m] == [1]
    assert callback.metrics == pytest.approx(expected)


def test_summary_logs_the_overall_figures_only_and_false_logs_nothing(tmp_path):
    callback = DASHCallback(log_factors="summary")
    _, _, logger, _ = _grow_and_fit(tmp_path / "a", callback)
    assert sorted(logger.received("dash/")) == ["dash/at_floor", "dash/mean_factor", "dash/min_factor"]

    quiet = DASHCallback(log_factors=False)
    _, _, logger, _ = _grow_and_fit(tmp_path / "b", quiet)
    assert len(quiet.reports) == 1 and logger.received("dash/") == {} and quiet.metrics == {}


class Holder(nn.Module):
    """The module's ``net`` under the same name, so that parameter and layer names match the callback's."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)


def test_diagnostics_before_and_after_the_shrink_are_logged_under_their_prefixes(tmp_path):
    """``diag/`` is measured on the model as trained, ``diag_after/`` on the shrunk one."""
    record: list = []

    class Snapshot(L.Callback):  # runs before DASHCallback at each epoch start: keeps the unshrunk model
        def on_train_epoch_start(self, trainer, pl_module):
            self.model = Holder(copy.deepcopy(pl_module.net))

    snap = Snapshot()
    callback = DASHCallback(diagnostics={"when": "both", "tau": 0.1})
    _, _, logger, data = _grow_and_fit(tmp_path, callback, Net(record), first=[snap])
    [report] = callback.reports
    before, after = logger.received("diag/"), logger.received("diag_after/")

    # The reference: diagnose itself on the unshrunk copy, and on it shrunk by the report's
    # factors, over the pass's data (all 48 examples in order, batches of 16).
    loader = DataLoader(ConcatDataset(data.chunks), batch_size=16, shuffle=False)
    shrunk = copy.deepcopy(snap.model)
    assert report.apply_to(shrunk) == ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]
    want_before = diagnose(snap.model, loader, tau=0.1).to_dict()
    want_after = diagnose(shrunk, loader, tau=0.1).to_dict()
    assert before.keys() == {f"diag/{k}" for k in want_before}
    assert after.keys() == {f"diag_after/{k}" for k in want_after}
    for key, value in want_before.items():
        assert before[f"diag/{key}"] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    for key, value in want_after.items():
        assert after[f"diag_after/{key}"] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert after["diag_after/norm"] < before["diag/norm"]  # two different models
    assert before["diag/num_batches"] == 3 and "diag/dormant/net.2" in before
    # The diagnostics' forward passes went through the pass's loss: before, DASH's pass, after.
    assert len(record) == 9
    assert all(torch.equal(a, b) for a, b in zip(record[:3], record[3:6]))


def test_run_from_a_hook_where_lightning_refuses_logging_warns_and_keeps_the_figures(tmp_path):
    callback = DASHCallback(auto=False)

    class Late(L.Callback):
        def on_train_end(self, trainer, pl_module):  # Lightning allows no self.log here
            self.report = callback.run(trainer, pl_module)

    late = Late()
    data, logger = Data(_chunk(0, 32)), Recorder()
    with pytest.warns(UserWarning, match=r"could not log its figures from on_train_end.*callback\.metrics"):
        _trainer(tmp_path, 1, [callback, late], logger).fit(Net(), data)
    assert late.report.call == 1 and callback.metrics["dash/mean_factor"] == late.report.mean_factor
    assert logger.received("dash/") == {}


def test_diagnostics_settings_are_checked_when_the_callback_is_made():
    with pytest.raises(ValueError, match=r"got 'taus', not an argument of torch_dash_optim\.diagnostics\.diagnose"):
        DASHCallback(diagnostics={"taus": 0.1})
    with pytest.raises(ValueError, match=r"'when' must be 'before', 'after' or 'both'"):
        DASHCallback(diagnostics={"when": "later"})
    with pytest.raises(ValueError, match=r"tau=-1 must be a finite number >= 0") as caught:
        DASHCallback(diagnostics={"tau": -1})
    assert "raised by DASHCallback(diagnostics=...)" in caught.value.__notes__[0]
    with pytest.raises(TypeError, match=r"must be True, False or a dict"):
        DASHCallback(diagnostics="yes")
    with pytest.raises(ValueError, match=r"log_factors must be True .* 'summary' .* or False; got 'all'"):
        DASHCallback(log_factors="all")
    with pytest.raises(TypeError, match=r"DASHCallback\(exclude=\.\.\.\) must be a glob pattern"):
        DASHCallback(exclude=[3])


def test_diagnostics_refuse_a_one_shot_loader_before_anything_changed(tmp_path):
    callback = DASHCallback(diagnostics=True, auto=False)
    model = Net()
    callback.request(iter([_chunk(0, 8).tensors]))
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(TypeError, match=r"reads the pass's loader twice .* one-shot list_iterator"):
        _trainer(tmp_path, 1, [callback], False).fit(model, Data(_chunk(0, 32)))
    assert callback.reports == []
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
