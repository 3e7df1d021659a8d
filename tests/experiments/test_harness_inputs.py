"""What ``run_protocol`` takes: targets that are not class indices, a loss and a metric of the user's, dict datasets.

Every bad input is refused before anything runs or is written, with a message that names the fix.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from torch_dash_optim.experiments import ProtocolConfig, run_protocol
from torch_dash_optim.experiments.checks import check_device, check_protocol
from torch_dash_optim.experiments.training import Metric

CONFIG = ProtocolConfig(num_chunks=2, lr=0.05, batch_size=16, max_epochs=3, threshold=0.95)


def _xy(n: int = 80, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    return x, (x[:, 0] > 0).long()


def _pair(x: torch.Tensor, y: torch.Tensor) -> tuple[TensorDataset, TensorDataset]:
    return TensorDataset(x[:60], y[:60]), TensorDataset(x[60:], y[60:])


def _classifier(outputs: int = 2) -> nn.Module:
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, outputs))


def _refused(tmp_path: Path, message: str, *args: object, **kwargs: object) -> str:
    """Run the protocol into ``tmp_path/out``; it must raise before writing anything. Returns the message."""
    out = tmp_path / "out"
    with pytest.raises((ValueError, TypeError), match=message) as err:
        run_protocol(*args, config=CONFIG, methods=["warm"], out=out, progress=False, **kwargs)
    assert not out.exists()
    return str(err.value)


def test_float_targets_for_a_one_logit_model_are_refused_with_what_to_pass(tmp_path: Path) -> None:
    """The issue's case: cross-entropy of one logit is 0, accuracy broadcast to 10-21 "%"."""
    x, y = _xy()
    text = _refused(tmp_path, "1 logit", *_pair(x, y.float().unsqueeze(1)), functools.partial(_classifier, 1))
    assert "loss_fn=" in text and "metric=Metric(" in text and "\n" not in text


@pytest.mark.parametrize(
    ("targets", "outputs", "message"),
    [
        (lambda y: y.float().unsqueeze(1), 2, r"targets are float32 of shape \(15, 1\), not class indices"),
        (lambda y: y.float(), 2, r"targets are float32 of shape \(15,\), not class indices"),
        (lambda y: y, 1, "1 logit"),  # class indices, but one logit
        (lambda y: y * 5, 2, "hold class 5 but the model gives 2 logits"),  # a class the model has no logit for
        (lambda y: y - 1, 2, "hold class -1"),
        (lambda y: torch.stack([y, 1 - y], 1), 2, r"targets have shape \(15, 2\) for outputs of shape \(15, 2\)"),
    ],
)
def test_targets_that_do_not_fit_a_classifier_are_refused(tmp_path: Path, targets, outputs: int, message: str) -> None:
    x, y = _xy()
    text = _refused(tmp_path, message, *_pair(x, targets(y)), functools.partial(_classifier, outputs))
    assert "loss_fn=" in text or "one output per class" in text


def test_a_class_index_out_of_range_anywhere_in_the_test_set_is_refused(tmp_path: Path) -> None:
    x, y = _xy()
    y[-1] = 7  # the last test example only: not in the first batches
    _refused(tmp_path, "the test targets hold class 7 but the model gives 2 logits", *_pair(x, y), _classifier)


def _mae(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs - targets).abs().mean(1)


def test_a_regression_user_passes_a_loss_and_a_metric_and_accuracy_stays_out() -> None:
    x, _ = _xy(160)
    y = x[:, :2].sum(1, keepdim=True) + 0.1 * torch.randn(160, 1, generator=torch.Generator().manual_seed(1))
    train, test = TensorDataset(x[:120], y[:120]), TensorDataset(x[120:], y[120:])
    config = ProtocolConfig(num_chunks=2, lr=0.05, batch_size=16, max_epochs=60)
    reachable = Metric(_mae, threshold=0.3, higher_is_better=False, name="mae")
    records = run_protocol(train, test, functools.partial(nn.Linear, 5, 1), config=config, methods=["warm", "sp"],
                           loss_fn=nn.MSELoss(), metric=reachable, progress=False)
    for r in records:
        assert r["train_acc"] is None and r["test_acc"] is None  # no accuracy to break the [0, 1] promise
        assert r["train_metric"] <= 0.3 and r["epochs"] < config.max_epochs  # stopped by the metric's threshold
        assert 0 <= r["test_metric"] < 1 and 0 <= r["test_loss"] < 1  # the MSE of the test set
    never = Metric(_mae, threshold=0.01, higher_is_better=False)  # below the noise
    capped = run_protocol(train, test, functools.partial(nn.Linear, 5, 1), config=config, methods=["warm"],
                          loss_fn=nn.MSELoss(), metric=never, progress=False)
    assert all(r["epochs"] == config.max_epochs for r in capped)


def test_a_multi_label_user_passes_bce_and_a_score() -> None:
    x, _ = _xy(120)
    y = torch.stack([x[:, 0] > 0, x[:, 1] > 0, x[:, 0] + x[:, 1] > 0], 1).float()
    exact = Metric(lambda out, t: ((out > 0).float() == t).float().mean(1), threshold=0.9, name="label accuracy")
    records = run_protocol(*_pair(x, y), functools.partial(_classifier, 3), config=CONFIG, methods=["warm", "sp"],
                           loss_fn=nn.BCEWithLogitsLoss(), metric=exact, progress=False)
    assert all(0 <= r["test_metric"] <= 1 and r["test_acc"] is None for r in records)


class _CountingBCE(nn.BCEWithLogitsLoss):
    """Counts the batches it is called on, by size: DASH's gradient pass takes one batch per chunk (30)."""

    sizes: list[int] = []

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _CountingBCE.sizes.append(outputs.shape[0])
        return super().forward(outputs, targets)


@pytest.mark.parametrize("method", ["dash", "uniform_global", "uniform_matched", "shuffled"])
def test_the_methods_gradient_pass_takes_the_runs_loss(method: str) -> None:
    """With loss_fn=, DASH and its controls shrink by the gradient of that loss, not the cross-entropy's."""
    x, _ = _xy()
    y = torch.stack([x[:, 0] > 0, x[:, 1] > 0], 1).float()
    _CountingBCE.sizes = []
    exact = Metric(lambda out, t: ((out > 0).float() == t).float().mean(1), threshold=0.9)
    records = run_protocol(*_pair(x, y), _classifier, config=CONFIG, methods=[method], loss_fn=_CountingBCE(),
                           metric=exact, progress=False)
    assert _CountingBCE.sizes.count(30) == 2  # experiment 2's pass: the two chunks, one batch each
    assert records[1]["dash_mean_factor"] is not None


def test_the_saved_settings_name_the_loss_and_the_metric(tmp_path: Path) -> None:
    import json

    x, _ = _xy()
    y = x[:, :1]
    metric = Metric(_mae, threshold=0.5, higher_is_better=False, name="mae")
    run_protocol(*_pair(x, y), functools.partial(nn.Linear, 5, 1), config=CONFIG, methods=["warm"], out=tmp_path,
                 loss_fn=nn.MSELoss(), metric=metric, progress=False)
    saved = json.loads((tmp_path / "config.json").read_text())["objective"]
    assert saved == {"loss": "MSELoss()", "metric": "mae", "threshold": 0.5, "higher_is_better": False}


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        (Metric(lambda out, t: (out - t).abs(), threshold=0.1), r"returned shape \(15, 1\) for a batch of 15"),
        (Metric(lambda out, t: out.undefined(), threshold=0.1), "metric 'metric' fails on outputs"),
    ],
)
def test_a_metric_that_cannot_work_is_refused_before_the_run(tmp_path: Path, metric: Metric, message: str) -> None:
    x, _ = _xy()
    _refused(tmp_path, message, *_pair(x, x[:, :1]), functools.partial(nn.Linear, 5, 1),
             loss_fn=nn.MSELoss(), metric=metric)


@pytest.mark.filterwarnings("ignore:Using a target size")  # MSELoss's own warning, before it fails
def test_a_loss_that_cannot_work_is_refused_before_the_run(tmp_path: Path) -> None:
    x, y = _xy()
    _refused(tmp_path, r"the loss fails on outputs of shape \(15, 2\)", *_pair(x, y), _classifier,
             loss_fn=nn.MSELoss(), metric=Metric(_mae, 0.1))
    _refused(tmp_path, r"loss_fn returned shape \(15,\)", *_pair(x, y), _classifier,
             loss_fn=nn.CrossEntropyLoss(reduction="none"))
    _refused(tmp_path, "metric must be a Metric", *_pair(x, y), _classifier, metric=_mae)


class _Dicts(Dataset):
    """Hugging Face style: every item is a dict."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.x[i], "label": self.y[i]}


def _split(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch["pixel_values"], batch["label"]


def test_a_dict_dataset_is_refused_clearly_and_runs_with_split_batch(tmp_path: Path) -> None:
    x, y = _xy()
    dicts = _Dicts(x[:60], y[:60]), _Dicts(x[60:], y[60:])
    text = _refused(tmp_path, "items are dicts", *dicts, _classifier)
    assert "split_batch=" in text and "'pixel_values'" in text and "'str' object" not in text
    kwargs = dict(config=CONFIG, methods=["warm", "dash"], progress=False)
    from_dicts = run_protocol(*dicts, _classifier, split_batch=_split, **kwargs)
    from_pairs = run_protocol(*_pair(x, y), _classifier, **kwargs)
    timing = ("seconds", "cpu_seconds", "diagnostics_seconds")
    strip = lambda rs: [{k: v for k, v in r.items() if k not in timing} for r in rs]  # noqa: E731
    assert strip(from_dicts) == strip(from_pairs)  # the same batches, the same run (the DASH pass included)


def test_a_model_that_returns_no_tensor_is_refused(tmp_path: Path) -> None:
    class Outputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(5, 2)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"logits": self.fc(x)}

    x, y = _xy()
    _refused(tmp_path, "the model returned dict, not a tensor", *_pair(x, y), Outputs)


def test_the_check_leaves_the_global_rng_as_it_was() -> None:
    x, y = _xy()
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    check_protocol(*_pair(x, y), _classifier, config=CONFIG)
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("meta", "holds no data"),
        ("nonsense", "is not a device"),
        pytest.param("mps", "no MPS", marks=pytest.mark.skipif(
            torch.backends.mps.is_available(), reason="checks the message without MPS")),
        pytest.param("cuda", "torch sees no CUDA GPU", marks=pytest.mark.skipif(
            torch.cuda.is_available(), reason="checks the message without a GPU")),
        pytest.param("cuda:99", "does not exist", marks=pytest.mark.skipif(
            not torch.cuda.is_available(), reason="needs a GPU")),
    ],
)
def test_every_device_is_checked_before_the_run(tmp_path: Path, device: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_device(device)
    x, y = _xy()
    _refused(tmp_path, message, *_pair(x, y), _classifier, device=device)
