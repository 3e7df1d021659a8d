"""torch.compile: a compiled model in on_new_data, and a compiled optimizer step.

The model is compiled with the ``aot_eager`` backend (it traces forward and backward like the
default backend, without the C++ compilation that takes close to a minute on a 2-core CI
machine); the optimizer step is compiled with the default backend (inductor).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torch_dash_optim import DASHWrapper

from ._common import train, vector_batches

pytestmark = pytest.mark.skipif(not hasattr(torch, "compile"), reason="torch.compile unavailable")


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


@pytest.fixture(autouse=True)
def _reset_dynamo() -> None:
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()


def test_on_new_data_with_compiled_model_shrinks_the_original_parameters() -> None:
    data = vector_batches(3)
    model = _mlp()
    compiled = torch.compile(model, backend="aot_eager")
    opt = DASHWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
        model=compiled,
        loss_fn=nn.CrossEntropyLoss(),
        lambd=0.0,
    )
    train(opt, compiled, data)
    ref_model = _mlp()
    ref = DASHWrapper(
        torch.optim.SGD(ref_model.parameters(), lr=0.1, momentum=0.9),
        model=ref_model,
        loss_fn=nn.CrossEntropyLoss(),
        lambd=0.0,
    )
    train(ref, ref_model, data)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    report = opt.on_new_data(data)
    ref.on_new_data(data)
    assert [p.name for p in report.params] == ["0.weight", "0.bias", "2.weight", "2.bias"]  # no _orig_mod.
    for (n, p), q in zip(model.named_parameters(), ref_model.parameters(), strict=True):
        assert not torch.equal(p, before[n]), f"{n} was not shrunk"
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    # The compiled module sees the shrunk weights, and training goes on.
    x = data[0][0]
    torch.testing.assert_close(compiled(x), model(x))
    train(opt, compiled, data)


def test_modes_of_a_compiled_model_come_back_after_on_new_data() -> None:
    model = _mlp()
    compiled = torch.compile(model, backend="aot_eager")
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=compiled, loss_fn=nn.CrossEntropyLoss())
    compiled.train()
    model[0].eval()  # mixed modes, set on the original module behind the compiled one
    modes = {n: m.training for n, m in compiled.named_modules()}
    seen = []
    model[2].register_forward_pre_hook(lambda m, args: seen.append(m.training))
    opt.on_new_data(vector_batches(2))
    assert seen == [False, False]  # the pass ran in eval mode...
    assert {n: m.training for n, m in compiled.named_modules()} == modes  # ...and the modes came back


def _compiled_children(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """A model whose children are compiled one by one (torch.compile on a submodule), inside a compiled whole."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8)),
        nn.ReLU(),
        nn.Linear(8, 3),
    )
    model[0] = torch.compile(model[0], backend="eager")
    model[2] = torch.compile(model[2], backend="eager")
    return model, torch.compile(model, backend="eager")


@pytest.mark.parametrize("outer", [False, True], ids=["compiled-children", "compiled-children-in-compiled-model"])
def test_compiled_submodules_are_reported_under_their_plain_names(outer: bool) -> None:
    model, whole = _compiled_children()
    assert "0._orig_mod.0.weight" in dict(model.named_parameters())  # what torch calls them
    wrapped = whole if outer else model
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=wrapped, loss_fn=nn.CrossEntropyLoss())
    report = opt.on_new_data(vector_batches(2))
    assert [p.name for p in report.params] == ["0.0.weight", "0.0.bias", "2.weight", "2.bias"]
    assert set(report.skipped) == {"0.1.weight", "0.1.bias"}  # the LayerNorm, named without _orig_mod
    assert set(report.factors) == {"0.0.weight", "0.0.bias", "2.weight", "2.bias"}
    assert not any("_orig_mod" in name for name in [*report.factors, *report.skipped, str(report)])


def test_compiled_optimizer_step_default_backend() -> None:
    data = vector_batches(3)
    models = [_mlp(), _mlp()]
    opts = [
        DASHWrapper(
            torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9), model=m, loss_fn=nn.CrossEntropyLoss()
        )
        for m in models
    ]
    compiled_step = torch.compile(opts[1].step)
    for i, (x, y) in enumerate(data):
        for model, opt, step in zip(models, opts, (opts[0].step, compiled_step), strict=True):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            step()
        if i == 1:  # DASH between compiled steps: the step keeps working on the shrunk weights
            for opt in opts:
                opt.on_new_data(data)
    for p, q in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # it really was compiled
