"""torch.compile on the device: a compiled model in on_new_data, and a compiled optimizer step."""

from __future__ import annotations

import pytest
import torch
from _cuda_helpers import batches, cnn, factors_close, train, wrapped

pytestmark = pytest.mark.cuda


def test_compiled_model_gives_the_eager_factors(device: torch.device) -> None:
    torch._dynamo.reset()
    data = batches(device)
    eager, model = cnn(device), cnn(device)
    compiled = torch.compile(model)  # default backend (inductor)
    opt = wrapped(compiled, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    ref = wrapped(eager, torch.optim.SGD(eager.parameters(), lr=0.05, momentum=0.9))
    train(opt, compiled, data)
    train(ref, eager, data)
    report = opt.on_new_data(data)
    exact = ref.on_new_data(data)
    assert {n.removeprefix("_orig_mod.") for n in report.factors} == set(exact.factors)
    factors_close({n.removeprefix("_orig_mod."): f for n, f in report.factors.items()}, exact.factors, atol=1e-4)
    x = data[0][0]
    model.eval()
    torch.testing.assert_close(compiled(x), model(x))  # the compiled module sees the shrunk weights
    train(opt, compiled, data)
    assert compiled.training


def test_compiled_step_matches_the_eager_step_around_dash(device: torch.device) -> None:
    torch._dynamo.reset()
    data = batches(device, n=6)
    models = [cnn(device), cnn(device)]
    # SGD: Adam's m / sqrt(v) would turn the compiled kernel's last-bit rounding of tiny gradients
    # into differences of the order of the learning rate, on the eager path too.
    opts = [wrapped(m, torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, foreach=True)) for m in models]
    steps = [opts[0].step, torch.compile(opts[1].step)]
    for i, (x, y) in enumerate(data):
        for model, opt, step in zip(models, opts, steps, strict=True):
            model.train()
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            step()
        if i == 2:  # DASH between compiled steps
            for opt in opts:
                opt.on_new_data(data)
    for p, q in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
