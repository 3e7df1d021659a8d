"""Clear errors (naming the value and the fix) for the bad inputs of the core API."""

from __future__ import annotations

import pytest
import torch
from _models import SmallCNN, make_data
from torch import nn

from torch_dash_optim import DASHWrapper


def _opt(**kw):
    model = SmallCNN()
    kw.setdefault("loss_fn", nn.CrossEntropyLoss())
    return model, DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, **kw)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"lambd": 1.5}, ValueError, r"lambd=1.5 is outside \[0, 1\]"),
        ({"lambd": -0.1}, ValueError, r"lambd=-0.1 is outside \[0, 1\]"),
        ({"lambd": "0.3"}, TypeError, r"lambd must be a number in \[0, 1\]; got '0.3'"),
        ({"alpha": 0.0}, ValueError, r"alpha=0.0 is outside \(0, 1\]"),
        ({"alpha": 1.2}, ValueError, r"alpha=1.2 is outside \(0, 1\]"),
        ({"alpha": float("nan")}, ValueError, r"alpha=nan is outside \(0, 1\]"),
        ({"granularity": "row"}, ValueError, "unknown granularity 'row'; use one of 'kernel', 'neuron', 'tensor'"),
        ({"state": "zero"}, ValueError, "unknown state 'zero'; use one of 'keep', 'scale', 'reset'"),
        ({"average": "median"}, ValueError, "unknown average 'median'; use one of 'ema', 'mean'"),
        ({"mode": "test"}, ValueError, "unknown mode 'test'; use one of 'eval', 'train'"),
        ({"batch_loss": lambda m, b: 0}, ValueError, "give loss_fn .* or batch_loss .*, not both"),
        ({"loss_fn": "ce"}, TypeError, "loss_fn must be callable; got str"),
        ({"autocast_dtype": "bf16"}, TypeError, "autocast_dtype must be a torch.dtype"),
        ({"sync": 1}, TypeError, "sync must be True, False or None"),
    ],
)
def test_bad_settings_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        _opt(**kwargs)


def test_not_an_optimizer_or_not_a_model():
    model = SmallCNN()
    with pytest.raises(TypeError, match="expected a torch.optim.Optimizer instance; got list"):
        DASHWrapper(list(model.parameters()), model=model)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module or None; got dict"):
        DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model={})


def test_model_whose_parameters_are_not_the_optimizers():
    with pytest.raises(ValueError, match="is not a parameter of the model; pass the model whose parameters"):
        DASHWrapper(torch.optim.SGD(SmallCNN().parameters(), lr=0.1), model=SmallCNN())


def test_empty_loader():
    _, opt = _opt()
    with pytest.raises(ValueError, match="the loader yielded no batch"):
        opt.on_new_data([])


def test_on_new_data_without_a_loss():
    model, opt = _opt(loss_fn=None)
    with pytest.raises(ValueError, match="on_new_data needs a loss: pass loss_fn=criterion"):
        opt.on_new_data(make_data())
    opt2 = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="loss_fn needs the model to compute outputs, but model=None"):
        opt2.on_new_data(make_data(), loss_fn=nn.CrossEntropyLoss())


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (torch.randn(4, 3, 8, 8), "the loader yielded a Tensor;"),
        ((torch.randn(4, 3, 8, 8),), "the loader yielded a tuple of length 1;"),
        ({"x": torch.randn(4, 3, 8, 8)}, "the loader yielded a dict;"),
    ],
)
def test_batches_it_cannot_use(batch, message):
    model, opt = _opt()
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(TypeError, match=message + " for other batches pass batch_loss=fn"):
        opt.on_new_data([batch])
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_loader_that_is_not_iterable():
    _, opt = _opt()
    with pytest.raises(TypeError, match="loader must be an iterable of batches; got int"):
        opt.on_new_data(3)
