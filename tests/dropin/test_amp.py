"""Mixed precision: autocast in the gradient pass, GradScaler, the SAM recipe, low-precision params."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import torch_dash_optim.functional as F
from torch_dash_optim import SAM, DASHWrapper
from torch_dash_optim.amp import grads_finite, sam_amp_step

from ._common import assert_unchanged, snapshot, tiny_cnn, tiny_mlp, vector_batches


def _recording_loss(seen: list[torch.dtype]) -> Any:
    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append(out.dtype)
        return nn.functional.cross_entropy(out.float(), y)

    return loss


def _spy_factors(monkeypatch: pytest.MonkeyPatch) -> list[torch.dtype]:
    """Record the dtype of every factor the shrink applies."""
    dtypes: list[torch.dtype] = []
    real = F.shrink_

    def spy(tensors: Any, factors: Any) -> None:
        dtypes.extend(f.dtype for f in factors)
        real(tensors, factors)

    monkeypatch.setattr(F, "shrink_", spy)
    return dtypes


def test_autocast_option_runs_forward_in_bf16_and_factors_in_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    data = vector_batches(3)
    ref_model = tiny_mlp()
    ref = DASHWrapper(
        torch.optim.SGD(ref_model.parameters(), lr=0.1), model=ref_model, loss_fn=nn.CrossEntropyLoss()
    )
    ref.on_new_data(data)
    model = tiny_mlp()
    opt = DASHWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1),
        model=model,
        loss_fn=_recording_loss(seen := []),
        autocast_dtype=torch.bfloat16,
    )
    factor_dtypes = _spy_factors(monkeypatch)
    opt.on_new_data(data)
    assert seen == [torch.bfloat16] * 3
    assert set(factor_dtypes) == {torch.float32}
    for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
        assert p.dtype == torch.float32
        torch.testing.assert_close(p, q, atol=2e-2, rtol=2e-2)  # bf16 forward, same shrink
    assert not torch.is_autocast_enabled("cpu")


def test_enclosing_autocast_is_honoured() -> None:
    model = tiny_mlp()
    opt = DASHWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=_recording_loss(seen := [])
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        opt.on_new_data(vector_batches(2))
    assert seen == [torch.bfloat16] * 2
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_params_get_fp32_factors(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype) -> None:
    model = tiny_cnn().to(dtype)
    ref_model = tiny_cnn()  # same seed, float32
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss())
    factor_dtypes = _spy_factors(monkeypatch)
    g = torch.Generator().manual_seed(3)
    data = [(torch.randn(4, 2, 4, 4, generator=g), torch.randint(0, 3, (4,), generator=g)) for _ in range(2)]
    report = opt.on_new_data([(x.to(dtype), y) for x, y in data])
    assert set(factor_dtypes) == {torch.float32}
    assert all(p.dtype == dtype for p in model.parameters())
    assert all(0.3 <= r.min <= r.max <= 1.0 for r in report.params)
    ref = DASHWrapper(
        torch.optim.SGD(ref_model.parameters(), lr=0.1), model=ref_model, loss_fn=nn.CrossEntropyLoss()
    )
    ref.on_new_data(data)
    for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(p.float(), q, atol=3e-2, rtol=3e-2)


def _scaled_run(
    make_opt: Any, steps: int = 4, poison: int | None = None
) -> tuple[nn.Module, torch.amp.GradScaler]:
    model = tiny_mlp()
    opt = make_opt(model)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=2)
    for i, (x, y) in enumerate(vector_batches(steps)):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        if i == poison:
            loss = loss * float("inf")
        scaler.scale(loss).backward()
        scaler.unscale_(opt)  # the wrapper, always
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        scaler.step(opt)
        scaler.update()
    return model, scaler


@pytest.mark.parametrize("poison", [None, 1], ids=["finite", "inf-step-skipped"])
@pytest.mark.parametrize("base", [torch.optim.SGD, torch.optim.AdamW])
def test_gradscaler_with_wrapper_matches_bare_optimizer(poison: int | None, base: Any) -> None:
    def bare(model: nn.Module) -> torch.optim.Optimizer:
        return base(model.parameters(), lr=0.01)

    def wrapped(model: nn.Module) -> torch.optim.Optimizer:
        return DASHWrapper(base(model.parameters(), lr=0.01), model=model, loss_fn=nn.CrossEntropyLoss())

    m1, s1 = _scaled_run(bare, poison=poison)
    m2, s2 = _scaled_run(wrapped, poison=poison)
    for p, q in zip(m1.parameters(), m2.parameters(), strict=True):
        assert torch.equal(p, q)
    assert s1.get_scale() == s2.get_scale()
    if poison is not None:
        assert s1.get_scale() < 2.0**10 * 2  # backed off once


def test_fused_base_is_not_half_forwarded_to_gradscaler() -> None:
    model = tiny_mlp()
    opt = DASHWrapper(torch.optim.AdamW(model.parameters(), lr=0.01, fused=True), model=model)
    assert not getattr(opt, "_step_supports_amp_scaling", False)
    ref_model = tiny_mlp()
    ref = torch.optim.AdamW(ref_model.parameters(), lr=0.01)
    for o, m in ((opt, model), (ref, ref_model)):
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
        for x, y in vector_batches(3):
            o.zero_grad()
            scaler.scale(nn.functional.cross_entropy(m(x), y)).backward()
            scaler.step(o)
            scaler.update()
    for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-5)  # fused vs foreach rounding only


# --- SAM recipe ------------------------------------------------------------------------------


def _sam_setup(wrap: bool) -> tuple[nn.Module, torch.optim.Optimizer]:
    model = tiny_mlp()
    sam = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    if wrap:
        return model, DASHWrapper(sam, model=model, loss_fn=nn.CrossEntropyLoss())
    return model, sam


@pytest.mark.parametrize("wrap", [False, True], ids=["SAM", "DASHWrapper(SAM)"])
def test_sam_recipe_equals_unscaled_sam_step(wrap: bool) -> None:
    data = vector_batches(3)
    ref_model, ref = _sam_setup(wrap)
    for x, y in data:

        def closure(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
            ref.zero_grad()
            loss = nn.functional.cross_entropy(ref_model(x), y)
            loss.backward()
            return loss

        ref.step(closure)
    model, opt = _sam_setup(wrap)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12, growth_interval=1000)
    for x, y in data:
        loss, stepped = sam_amp_step(opt, scaler, lambda x=x, y=y: nn.functional.cross_entropy(model(x), y))
        assert stepped and loss.ndim == 0
    # Power-of-two scaling and unscaling are exact in float32: bit-identical to plain SAM.
    for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
        assert torch.equal(p, q)
    for s, t in zip(opt.state.values(), ref.state.values(), strict=True):
        assert torch.equal(s["momentum_buffer"], t["momentum_buffer"])


@pytest.mark.parametrize("bad_pass", [0, 1], ids=["inf-in-first-pass", "inf-in-second-pass"])
@pytest.mark.parametrize("wrap", [False, True], ids=["SAM", "DASHWrapper(SAM)"])
def test_sam_recipe_skips_both_steps_on_inf(bad_pass: int, wrap: bool) -> None:
    model, opt = _sam_setup(wrap)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12, growth_interval=1000)
    x, y = vector_batches(1)[0]
    sam_amp_step(opt, scaler, lambda: nn.functional.cross_entropy(model(x), y))  # momentum exists
    opt.zero_grad(set_to_none=True)
    before = snapshot(model, opt)
    scale = scaler.get_scale()
    calls = {"n": 0}

    def closure() -> torch.Tensor:
        loss = nn.functional.cross_entropy(model(x), y)
        calls["n"] += 1
        return loss * float("inf") if calls["n"] - 1 == bad_pass else loss

    loss, stepped = sam_amp_step(opt, scaler, closure)
    assert not stepped
    assert calls["n"] == bad_pass + 1
    assert_unchanged(before, model, opt)
    assert scaler.get_scale() == scale * 0.5
    # The next step works normally.
    _, stepped = sam_amp_step(opt, scaler, lambda: nn.functional.cross_entropy(model(x), y))
    assert stepped


def test_sam_recipe_undoes_perturbation_when_second_pass_raises() -> None:
    model, opt = _sam_setup(True)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    x, y = vector_batches(1)[0]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    calls = {"n": 0}

    def closure() -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("second pass failed")
        return nn.functional.cross_entropy(model(x), y)

    with pytest.raises(RuntimeError, match="second pass failed"):
        sam_amp_step(opt, scaler, closure)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])
    opt.state_dict()  # not stuck between first_step and second_step


def test_sam_recipe_rejects_non_sam() -> None:
    model = tiny_mlp()
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model)
    with pytest.raises(TypeError, match="needs a SAM optimizer"):
        sam_amp_step(opt, torch.amp.GradScaler("cpu"), lambda: model(torch.ones(1, 4)).sum())


def test_grads_finite() -> None:
    model = tiny_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert grads_finite(opt)
    model(torch.ones(1, 4)).sum().backward()
    assert grads_finite(opt)
    model[0].weight.grad[0, 0] = float("nan")
    assert not grads_finite(opt)


# --- CUDA (skipped only where CUDA is absent) -------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.cuda
@cuda
def test_cuda_autocast_and_no_host_sync_in_gathering_loop() -> None:
    model = tiny_cnn().cuda()
    opt = DASHWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1),
        model=model,
        loss_fn=nn.CrossEntropyLoss(),
        autocast_dtype=torch.float16,
    )
    g = torch.Generator(device="cuda").manual_seed(0)
    data = [
        (
            torch.randn(8, 2, 4, 4, device="cuda", generator=g),
            torch.randint(0, 3, (8,), device="cuda", generator=g),
        )
        for _ in range(4)
    ]

    def strict_loader() -> Any:
        """Host syncs raise while the gathering loop runs (from the first batch to the last)."""
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield from data
        finally:
            torch.cuda.set_sync_debug_mode(0)  # the loop is over: the one allowed sync follows

    before = [p.detach().clone() for p in model.parameters()]
    try:
        report = opt.on_new_data(strict_loader())
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert report.num_batches == 4
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
