"""Mixed precision on the GPU: float16 autocast with GradScaler (plain and SAM), and bfloat16."""

from __future__ import annotations

import pytest
import torch
from _cuda_helpers import batches, cnn, factors_close, wrapped
from torch import nn

from torch_dash_optim import SAM
from torch_dash_optim.amp import sam_amp_step

pytestmark = pytest.mark.cuda


def _scaled_training(opt: torch.optim.Optimizer, model: nn.Module, data, device: torch.device, scaler) -> None:
    model.train()
    for x, y in data:
        opt.zero_grad()
        with torch.autocast(device.type, dtype=torch.float16):
            loss = nn.functional.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()


def test_fp16_autocast_with_gradscaler_around_dash(device: torch.device) -> None:
    data = batches(device)
    model = cnn(device)
    opt = wrapped(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    scaler = torch.amp.GradScaler(device.type, init_scale=2.0**10)
    _scaled_training(opt, model, data, device, scaler)
    reference = cnn(device)
    reference.load_state_dict(model.state_dict())
    ref_opt = wrapped(reference, torch.optim.SGD(reference.parameters(), lr=0.05))

    with torch.autocast(device.type, dtype=torch.float16):  # an enclosing autocast is honoured
        report = opt.on_new_data(data)
    exact = ref_opt.on_new_data(data)  # float32 pass
    assert report.num_batches == len(data)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(f.dtype == torch.float32 for f in report.factors.values())
    factors_close(report.factors, exact.factors, atol=0.05)  # float16 gradients, float32 factors
    assert any(f.min() < 1 for f in report.factors.values())  # it did shrink something
    before = [p.detach().clone() for p in model.parameters()]
    _scaled_training(opt, model, data, device, scaler)  # the scaler keeps working after the shrink
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


def test_fp16_option_matches_the_enclosing_autocast(device: torch.device) -> None:
    data = batches(device)
    a, b = cnn(device), cnn(device)
    ra = wrapped(a, torch.optim.SGD(a.parameters(), lr=0.1), autocast_dtype=torch.float16).on_new_data(data)
    with torch.autocast(device.type, dtype=torch.float16):
        rb = wrapped(b, torch.optim.SGD(b.parameters(), lr=0.1)).on_new_data(data)
    factors_close(ra.factors, rb.factors, atol=1e-6)


def test_sam_with_gradscaler_through_sam_amp_step_and_dash(device: torch.device) -> None:
    data = batches(device)
    model = cnn(device)
    opt = wrapped(model, SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.05, momentum=0.9))
    scaler = torch.amp.GradScaler(device.type, init_scale=2.0**10)

    def run_steps() -> int:
        taken = 0
        model.train()
        for x, y in data:

            def closure(x=x, y=y) -> torch.Tensor:
                with torch.autocast(device.type, dtype=torch.float16):
                    return nn.functional.cross_entropy(model(x), y)

            loss, stepped = sam_amp_step(opt, scaler, closure)  # updates the scale itself
            assert torch.isfinite(loss)
            taken += int(stepped)
        return taken

    start = [p.detach().clone() for p in model.parameters()]
    assert run_steps() >= len(data) - 1  # at most one step skipped while the scale settles
    report = opt.on_new_data(
        data,
    )
    assert report.num_batches == len(data) and report.units > 0
    assert run_steps() >= len(data) - 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), start, strict=True))


def test_bf16_autocast_and_bf16_parameters(device: torch.device) -> None:
    data = batches(device)
    a, b = cnn(device), cnn(device)
    fp32 = wrapped(a, torch.optim.SGD(a.parameters(), lr=0.1)).on_new_data(data)
    bf16 = wrapped(b, torch.optim.SGD(b.parameters(), lr=0.1), autocast_dtype=torch.bfloat16).on_new_data(data)
    factors_close(bf16.factors, fp32.factors, atol=0.1)

    low = cnn(device).to(torch.bfloat16)  # parameters themselves in bfloat16
    low_data = [(x.to(torch.bfloat16), y) for x, y in data]
    before = {k: v.clone() for k, v in low.state_dict().items()}
    report = wrapped(low, torch.optim.SGD(low.parameters(), lr=0.1)).on_new_data(low_data)
    assert all(p.dtype == torch.bfloat16 and torch.isfinite(p).all() for p in low.parameters())
    assert all(f.dtype == torch.float32 for f in report.factors.values())
    assert any(not torch.equal(v, before[k]) for k, v in low.state_dict().items())
