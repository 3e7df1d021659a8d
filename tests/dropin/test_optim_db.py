"""Drop-in against torch's own catalogue of optimizers (``optim_db``, shipped with torch).

For every optimizer torch tests, every configuration its ``optim_inputs_func`` lists (maximize,
weight decay, tensor lr, capturable, ...), each with every implementation it supports on the
CPU (the default, ``foreach``, ``fused``, ``differentiable``), and for those that take sparse
gradients, with sparse gradients: the bare optimizer and the same optimizer wrapped in a
``DASHWrapper`` take the same steps bit for bit, hold bit-identical ``state_dict``\\s (the
wrapper's adds only its own settings), raise the same errors and fire the step hooks (global
and the optimizer's own) in the same order, with the optimizer the user holds. The error inputs of the
catalogue (``optim_error_inputs_func``) must raise, or warn, identically too.

The catalogue lives in ``torch.testing._internal``, which imports ``expecttest`` (a test
dependency of torch, not installed with it); a stand-in is put in place when it is missing.
"""

from __future__ import annotations

import copy
import os
import sys
import types
import unittest
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from torch_dash_optim import DASHWrapper


def _import_catalogue() -> Any:
    """Import torch's catalogue, undoing what its test utilities change in the process at import.

    ``torch.testing._internal.common_utils`` freezes the ``torch.backends`` flags
    (``disable_global_flags``: setting ``torch.backends.cudnn.benchmark`` would then raise in
    every later test), patches ``torch._C.ScriptFunction.__call__`` and ``ScriptMethod.__call__``,
    sets ``TORCHINDUCTOR_CACHE_DIR`` and adds warning filters. All are put back.
    """
    if "expecttest" not in sys.modules:
        try:
            import expecttest  # noqa: F401
        except ImportError:  # only its TestCase base class is needed to import the catalogue
            stub = types.ModuleType("expecttest")
            stub.TestCase = unittest.TestCase  # type: ignore[attr-defined]
            sys.modules["expecttest"] = stub
    flag = "__allow_nonbracketed_mutation_flag"
    backends = torch.backends.flags_frozen.__globals__  # torch.backends' own namespace (a module proxy hides it)
    saved_flag = backends.get(flag)
    saved_calls = (torch._C.ScriptFunction.__call__, torch._C.ScriptMethod.__call__)
    saved_env = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    saved_filters = list(warnings.filters)
    try:
        return pytest.importorskip("torch.testing._internal.common_optimizers")
    finally:
        if saved_flag is not None:
            backends[flag] = saved_flag
        torch._C.ScriptFunction.__call__, torch._C.ScriptMethod.__call__ = saved_calls  # type: ignore[method-assign]
        if saved_env is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = saved_env
        warnings.filters[:] = saved_filters


common_optimizers = _import_catalogue()
optim_db = common_optimizers.optim_db
OptimizerErrorEnum = common_optimizers.OptimizerErrorEnum

STEPS = 3
SETTINGS_KEY = "dash_settings"


def _configs(info: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every input of ``info``, plain and with each implementation flag the CPU supports."""
    impls = [x for x in info.supported_impls if x != "fused" or "cpu" in info.supports_fused_on]
    out = []
    for optim_input in info.optim_inputs_func(device="cpu", dtype=torch.float32):
        kwargs = dict(optim_input.kwargs)
        out.append((optim_input.desc, {**kwargs, **{flag: False for flag in impls}}))
        for flag in impls:
            out.append((f"{optim_input.desc} & {flag}", {**kwargs, **{f: f == flag for f in impls}}))
    return out


def _params(info: Any) -> list[Tensor]:
    gen = torch.Generator().manual_seed(0)
    shapes = [(4, 3), (2, 5)] if info.optim_cls.__name__ == "Muon" else [(4, 3), (3,)]
    return [torch.randn(s, generator=gen).requires_grad_() for s in shapes]


def _grads(params: list[Tensor], step: int, sparse: bool) -> list[Tensor]:
    gen = torch.Generator().manual_seed(100 + step)
    grads = [torch.randn(p.shape, generator=gen) for p in params]
    return [g.to_sparse() for g in grads] if sparse else grads


def _outcome(fn: Callable[[], Any]) -> tuple[Any, list[tuple[type, str]]]:
    """``fn()``'s exception (type and message, or None) and the warnings it issued."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fn()
            error = None
        except Exception as err:  # noqa: BLE001 - the bare optimizer's error is the reference
            error = (type(err), str(err))
    # C++ warnings issued once per process (TORCH_WARN_ONCE) fire for whichever side runs first.
    return error, [(w.category, str(w.message)) for w in caught if "Triggered internally" not in str(w.message)]


def _assert_equal(a: Any, b: Any, where: str) -> None:
    if isinstance(a, Tensor):
        assert isinstance(b, Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape and a.layout == b.layout, where
        if a.is_sparse:
            a, b = a.to_dense(), b.to_dense()
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=where)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {a.keys()} != {b.keys()}"
        for k in a:
            _assert_equal(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


def _without_settings(state_dict: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in state_dict.items() if k != "dash"}
    out["param_groups"] = [{k: v for k, v in g.items() if k != SETTINGS_KEY} for g in state_dict["param_groups"]]
    return out


def _run(info: Any, kwargs: dict[str, Any], sparse: bool, wrap: bool) -> list[Any]:
    """Steps of one optimizer; the trace of params, state_dicts and outcomes, for comparison."""
    params = _params(info)
    trace: list[Any] = []
    error, caught = _outcome(lambda: trace.append(info.optim_cls(params, **copy.deepcopy(kwargs))))
    if error is not None:
        return [error, caught]
    opt = trace.pop()
    if wrap:
        opt = DASHWrapper(opt)
    trace.append(caught)
    events: list[str] = []  # which hook fired, and whether with the object the user holds

    def record(name: str) -> Callable[..., None]:
        return lambda o, args, kwargs: events.append(f"{name} {'held' if o is opt else type(o).__name__}")

    handles = [
        register_optimizer_step_pre_hook(record("global pre")),
        register_optimizer_step_post_hook(record("global post")),
        opt.register_step_pre_hook(record("pre")),
        opt.register_step_post_hook(record("post")),
    ]
    try:
        _steps(info, opt, params, sparse, trace, wrap)
    finally:
        for handle in handles:
            handle.remove()
    trace.append(events)
    return trace


def _steps(info: Any, opt: Any, params: list[Tensor], sparse: bool, trace: list[Any], wrap: bool) -> None:
    for step in range(STEPS):
        grads = _grads(params, step, sparse)

        def closure(grads: list[Tensor] = grads) -> Tensor:
            for p, g in zip(params, grads):
                p.grad = g.clone()
            return sum((p.detach() * g.to_dense()).sum() for p, g in zip(params, grads))  # type: ignore[return-value]

        if not info.step_requires_closure:
            closure()
        error, caught = _outcome(lambda: opt.step(closure) if info.step_requires_closure else opt.step())
        trace.append((error, caught, [p.detach().clone() for p in params]))
        if error is not None:
            return
        state_dict = opt.state_dict()
        trace.append(_without_settings(state_dict) if wrap else state_dict)


def _sparse_modes(info: Any) -> list[bool]:
    if info.only_supports_sparse_grads:
        return [True]
    return [False, True] if info.supports_sparse else [False]


@pytest.mark.parametrize("info", optim_db, ids=lambda info: info.optim_cls.__name__)
def test_wrapped_steps_state_dicts_and_errors_match_the_bare_optimizer(info: Any) -> None:
    configs = _configs(info)
    assert configs
    for desc, kwargs in configs:
        for sparse in _sparse_modes(info):
            if sparse and (kwargs.get("fused") or kwargs.get("differentiable")):
                continue
            bare = _run(info, kwargs, sparse, wrap=False)
            wrapped = _run(info, kwargs, sparse, wrap=True)
            _assert_equal(bare, wrapped, f"{info.optim_cls.__name__} {desc} sparse={sparse}")


def _error_inputs(info: Any) -> list[Any]:
    torch.manual_seed(0)
    return info.optim_error_inputs_func(device="cpu", dtype=torch.float32)


def _error_outcome(error_input: Any, wrap: bool, info: Any) -> Any:
    optim_input = error_input.optimizer_error_input
    params, kwargs = optim_input.params, optim_input.kwargs

    def build() -> Any:
        opt = info.optim_cls(params, **kwargs)
        return DASHWrapper(opt) if wrap else opt

    if error_input.error_on == OptimizerErrorEnum.CONSTRUCTION_ERROR:
        return _outcome(build)
    opt = build()
    return _outcome(opt.step)


@pytest.mark.parametrize("info", optim_db, ids=lambda info: info.optim_cls.__name__)
def test_the_catalogues_error_inputs_fail_the_same_way_wrapped(info: Any) -> None:
    bare_inputs, wrapped_inputs = _error_inputs(info), _error_inputs(info)
    assert bare_inputs
    for bare_input, wrapped_input in zip(bare_inputs, wrapped_inputs, strict=True):
        desc = bare_input.optimizer_error_input.desc
        bare = _error_outcome(bare_input, False, info)
        wrapped = _error_outcome(wrapped_input, True, info)
        assert bare[0] is not None or bare[1], f"{desc}: the bare optimizer neither raised nor warned"
        assert bare == wrapped, f"{info.optim_cls.__name__} {desc}: {bare} != {wrapped}"


def test_importing_the_catalogue_left_torchs_global_flags_alone() -> None:
    """Later tests (e.g. tests/cuda setting torch.backends.cudnn.benchmark) must still be able to set flags."""
    assert not torch.backends.flags_frozen()
    assert type(torch._C.ScriptFunction.__call__).__name__ != "function"  # not the profiling patch
