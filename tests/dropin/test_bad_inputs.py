"""Bad inputs: each gets a clear error that names the problem, and nothing is changed."""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import nn

from torch_dash_optim import SAM, DASHWrapper

from ._common import assert_unchanged, snapshot, tiny_mlp, train, vector_batches


def _model_opt() -> tuple[nn.Module, torch.optim.Optimizer]:
    model = tiny_mlp()
    base = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train(base, model, vector_batches(2))
    return model, base


CONSTRUCTOR_CASES: list[Any] = [
    pytest.param(
        lambda m, o: DASHWrapper(list(m.parameters()), model=m),
        TypeError,
        "torch.optim.Optimizer instance",
        id="params-not-optimizer",
    ),
    pytest.param(
        lambda m, o: DASHWrapper(torch.optim.SGD, model=m),
        TypeError,
        "Build the optimizer first",
        id="optimizer-class",
    ),
    pytest.param(
        lambda m, o: DASHWrapper(o, model=m.state_dict()),
        TypeError,
        "model must be a torch.nn.Module",
        id="model-not-module",
    ),
    pytest.param(
        lambda m, o: DASHWrapper(o, model=m, lambd=1.5),
        ValueError,
        r"lambd=1.5 is outside \[0, 1\]",
        id="lambd-too-big",
    ),
    pytest.param(
        lambda m, o: DASHWrapper(o, model=m, lambd=-0.1),
        ValueError,
        r"lambd=-0.1 is outside",
        id="lambd-negative",
    ),
    pytest.param(
        lambda m, o: DASHWrapper(o, model=m, lambd="0.3"),
        TypeError,
        "lambd must be a number",
        id="lambd-string",
    ),
    pytest.param(
        lambda m, o: DASHWrapper(o, model=m, alpha=0),
        ValueError,
        r"alpha=0 is outside \(0, 1\]",
        id="alpha-zero",
    ),
    pytest.param(
        lambda m, o: DASHWrapper(o, model=m, alpha=float("nan")), ValueError, "alpha=nan", id="alpha-nan"
    ),
    pytest.param(
        lambda m, o: DASHWrapper(o, model=m, alpha=True), TypeError, "alpha must be a number", id="alpha-bool"
    ),
    pytest.param(
        lambda m, o: DASHWrapper(o, model=m, granularity="row"),
        ValueError,
        "unknown granularity 'row'",
        id="granularity",
    ),
    pytest.param(
        lambda m, o: DASHWrapper(o, model=m, average="median"),
        ValueError,
        "unknown average 'median'",
        id="average",
    ),
    pytest.param(
        lambda m, o: DASHWrapper(o, model=m, state="zero"), ValueError, "unknown state 'zero'", id="state"
    ),
    pytest.param(
        lambda m, o: DASHWrapper(o, model=m, mode="test"), ValueError, "unknown mode 'test'", id="mode"
    ),
    pytest.param(
        lambda m, o: DASHWrapper(o, model=m, autocast_dtype="bf16"),
        TypeError,
        "autocast_dtype must be a torch.dtype",
        id="autocast-dtype-str",
    ),
    pytest.param(
        lambda m, o: DASHWrapper(o, model=m, sync="yes"),
        TypeError,
        "sync must be True, False or None",
        id="sync-str",
    ),
    pytest.param(
        lambda m, o: DASHWrapper(o, model=m, loss_fn=nn.CrossEntropyLoss(), batch_loss=lambda mm, b: 0),
        ValueError,
        "not both",
        id="two-losses",
    ),
    pytest.param(
        lambda m, o: DASHWrapper(o, model=m, loss_fn="cross_entropy"),
        TypeError,
        "loss_fn must be callable",
        id="loss-not-callable",
    ),
    pytest.param(
        lambda m, o: DASHWrapper(o, model=tiny_mlp(seed=1)),
        ValueError,
        "is not a parameter of the model",
        id="foreign-model",
    ),
    pytest.param(
        lambda m, o: SAM(m.parameters(), torch.optim.SGD, rho=-1.0, lr=0.1),
        ValueError,
        "rho=-1.0 must be a finite number >= 0",
        id="sam-rho",
    ),
    pytest.param(lambda m, o: SAM(m.parameters(), o), TypeError, "not an instance", id="sam-base-instance"),
    pytest.param(
        lambda m, o: SAM(m.parameters(), torch.optim.SGD, rho=float("inf"), lr=0.1),
        ValueError,
        "rho=inf must be a finite number",
        id="sam-rho-inf",
    ),
    pytest.param(
        lambda m, o: DASHWrapper(o, model=m, autocast_dtype=torch.int32),
        ValueError,
        r"autocast_dtype=torch.int32 is not a floating dtype.*torch.bfloat16",
        id="autocast-dtype-int",
    ),
    pytest.param(
        lambda m, o: DASHWrapper(o, model=m, loss_fn=nn.CrossEntropyLoss),
        TypeError,
        r"loss_fn is the class CrossEntropyLoss, not an instance of it; pass CrossEntropyLoss\(\)",
        id="loss-class",
    ),
]


@pytest.mark.parametrize(("make", "kind", "match"), CONSTRUCTOR_CASES)
def test_constructor_rejects(make: Any, kind: type, match: str) -> None:
    model, base = _model_opt()
    before = snapshot(model, base)
    with pytest.raises(kind, match=match):
        make(model, base)
    assert_unchanged(before, model, base)


def test_wrapping_a_wrapper_is_refused_and_changes_nothing() -> None:
    model, base = _model_opt()
    inner = DASHWrapper(base, model=model)  # wrapping marks the live groups (the "dash_settings" placeholder)
    before = snapshot(model, inner)
    with pytest.raises(TypeError, match="already wrapped in a DASHWrapper; wrap the base optimizer once"):
        DASHWrapper(inner, model=model)
    assert_unchanged(before, model, inner)


def test_an_old_group_key_in_add_param_group_is_refused_and_changes_nothing() -> None:
    model, base = _model_opt()
    opt = DASHWrapper(base, model=model, loss_fn=nn.CrossEntropyLoss(), lambd=0.3)
    before = snapshot(model, opt)
    with pytest.raises(ValueError, match='rename "granularity" to "dash_granularity"'):
        opt.add_param_group({"params": [nn.Parameter(torch.ones(2))], "granularity": "neuron"})
    assert_unchanged(before, model, opt)


def test_bad_group_key_rejected_at_wrap_time() -> None:
    model = tiny_mlp()
    base = torch.optim.SGD(
        [{"params": model[0].parameters(), "dash_lambd": 2.0}, {"params": model[2].parameters()}], lr=0.1
    )
    with pytest.raises(ValueError, match=r'param group 0: "dash_lambd"=2.0 is outside \[0, 1\]'):
        DASHWrapper(base, model=model, loss_fn=nn.CrossEntropyLoss())
    base.param_groups[0]["dash_lambd"] = 0.5
    base.param_groups[1]["dash"] = "no"
    with pytest.raises(TypeError, match=r'param group 1: "dash" must be True or False'):
        DASHWrapper(base, model=model, loss_fn=nn.CrossEntropyLoss())


def _wrapped() -> tuple[nn.Module, DASHWrapper]:
    model, base = _model_opt()
    return model, DASHWrapper(base, model=model, loss_fn=nn.CrossEntropyLoss())


def _no_grad_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(out.detach(), y)


ON_NEW_DATA_CASES: list[Any] = [
    pytest.param(
        lambda o: o.on_new_data(7),
        TypeError,
        "loader must be an iterable of batches; got int",
        id="loader-int",
    ),
    pytest.param(lambda o: o.on_new_data([]), ValueError, "the loader yielded no batch", id="loader-empty"),
    pytest.param(
        lambda o: o.on_new_data(iter(())), ValueError, "the loader yielded no batch", id="generator-empty"
    ),
    pytest.param(
        lambda o: o.on_new_data([{"x": torch.randn(2, 4), "y": torch.zeros(2, dtype=torch.long)}]),
        TypeError,
        "loss_fn expects batches of \\(inputs, targets\\).*dict",
        id="batch-dict",
    ),
    pytest.param(
        lambda o: o.on_new_data([(torch.randn(2, 4),)]), TypeError, "tuple of length 1", id="batch-1-tuple"
    ),
    pytest.param(
        lambda o: o.on_new_data(vector_batches(1), loss_fn=nn.CrossEntropyLoss(reduction="none")),
        ValueError,
        r"batch 0: the loss must be a scalar; got shape \(8,\)",
        id="loss-not-scalar",
    ),
    pytest.param(
        lambda o: o.on_new_data(vector_batches(1), batch_loss=lambda m, b: 1.0),
        TypeError,
        "batch 0: the loss must be a Tensor; got float",
        id="loss-float",
    ),
    pytest.param(
        lambda o: o.on_new_data(vector_batches(1), loss_fn=_no_grad_loss),
        ValueError,
        "does not depend on any trainable parameter",
        id="loss-detached",
    ),
    pytest.param(
        lambda o: o.on_new_data(vector_batches(1), loss_fn=nn.CrossEntropyLoss(), batch_loss=lambda m, b: 0),
        ValueError,
        "not both",
        id="two-losses-per-call",
    ),
    pytest.param(
        lambda o: o.on_new_data(vector_batches(1), loss_fn=3),
        TypeError,
        "loss_fn must be callable",
        id="loss-int",
    ),
    pytest.param(
        lambda o: o.on_new_data([(torch.randn(2, 5), torch.zeros(2, dtype=torch.long))]),
        RuntimeError,
        "shapes cannot be multiplied",
        id="batch-wrong-shape",
    ),
    pytest.param(
        lambda o: o.add_param_group({"params": [nn.Parameter(torch.ones(2, 2))], "dash_granularity": "row"}),
        ValueError,
        "param group 1: unknown granularity 'row'",
        id="add-group-bad-granularity",
    ),
    pytest.param(
        lambda o: o.add_param_group({"params": [nn.Parameter(torch.ones(2, 4))], "lr": 0.1}),
        ValueError,
        "param group new: parameter 0 \\(shape \\(2, 4\\)\\) is not a parameter of the model",
        id="add-group-foreign-param",
    ),
    pytest.param(
        lambda o: o.on_new_data(vector_batches(1), loss_fn=nn.CrossEntropyLoss),
        TypeError,
        "loss_fn is the class CrossEntropyLoss",
        id="loss-class-per-call",
    ),
    pytest.param(
        lambda o: _under_inference_mode(lambda: o.on_new_data(vector_batches(1))),
        RuntimeError,
        r"under torch.inference_mode\(\).*call on_new_data outside the inference_mode block",
        id="inference-mode",
    ),
    pytest.param(
        lambda o: o.load_state_dict({**o.state_dict(), "dash": {"calls": 1}}),
        ValueError,
        "the 'dash' entry of this state_dict is malformed",
        id="state-dict-malformed",
    ),
    pytest.param(
        lambda o: o.load_state_dict(
            {
                **o.state_dict(),
                "dash": {"config": {**o.state_dict()["dash"]["config"], "lambd": 3.0}, "calls": 1},
            }
        ),
        ValueError,
        "lambd=3.0 is outside",
        id="state-dict-bad-lambd",
    ),
]


def _under_inference_mode(fn: Any) -> Any:
    with torch.inference_mode():
        return fn()


@pytest.mark.parametrize(("call", "kind", "match"), ON_NEW_DATA_CASES)
def test_call_rejects(call: Any, kind: type, match: str) -> None:
    model, opt = _wrapped()
    before = snapshot(model, opt)
    config, groups = (
        opt.config,
        copy.deepcopy([{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]),
    )
    with pytest.raises(kind, match=match):
        call(opt)
    assert_unchanged(before, model, opt)
    assert opt.config == config
    assert [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups] == groups


def test_missing_loss_is_explained() -> None:
    model, base = _model_opt()
    opt = DASHWrapper(base, model=model)
    before = snapshot(model, opt)
    with pytest.raises(ValueError, match="on_new_data needs a loss: pass loss_fn=criterion"):
        opt.on_new_data(vector_batches(1))
    assert_unchanged(before, model, opt)


def test_loss_fn_without_model_is_explained() -> None:
    model, base = _model_opt()
    opt = DASHWrapper(base, model=None, loss_fn=nn.CrossEntropyLoss())
    before = snapshot(model, opt)
    with pytest.raises(ValueError, match="loss_fn needs the model to compute outputs, but model=None"):
        opt.on_new_data(vector_batches(1))
    assert_unchanged(before, model, opt)


def test_fsdp1_is_refused_clearly() -> None:
    fsdp = pytest.importorskip("torch.distributed.fsdp")

    class Flat(fsdp.FullyShardedDataParallel):  # FSDP1 needs an accelerator; only its type matters
        def __init__(self, module: nn.Module) -> None:
            nn.Module.__init__(self)
            self.inner = module

    model, base = _model_opt()
    before = snapshot(model, base)
    with pytest.raises(NotImplementedError, match="does not support FSDP1.*fully_shard"):
        DASHWrapper(base, model=Flat(model), loss_fn=nn.CrossEntropyLoss())
    assert_unchanged(before, model, base)


# -- issue 10: unclear errors made clear ---------------------------------------------------------


class _WithEmptyLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.main = nn.Linear(4, 3)
        self.empty = nn.Linear(4, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.empty(x).sum()


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_zero_size_layer_is_skipped_with_a_reason() -> None:
    model = _WithEmptyLayer()
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss())
    report = opt.on_new_data(vector_batches(2))
    assert report.skipped["empty.weight"] == report.skipped["empty.bias"] == "empty (no elements)"
    assert {p.name for p in report.params} == {"main.weight", "main.bias"}


def test_sparse_gradients_without_a_model_are_refused_clearly() -> None:
    torch.manual_seed(0)
    emb, head = nn.Embedding(10, 4, sparse=True), nn.Linear(4, 3)
    model = nn.ModuleDict({"emb": emb, "head": head})
    opt = DASHWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1),
        batch_loss=lambda m, b: nn.functional.cross_entropy(head(emb(b[0]).mean(1)), b[1]),
    )
    data = [(torch.randint(0, 10, (6, 3)), torch.randint(0, 3, (6,)))]
    before = snapshot(model, opt)
    with pytest.raises(TypeError, match='param\\[0\\] got a torch.sparse_coo gradient.*"dash": False'):
        opt.on_new_data(data)
    assert_unchanged(before, model, opt)


def test_complex_parameters_are_skipped_not_shrunk_by_their_real_part() -> None:
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(3, 4, dtype=torch.complex64))
    real = nn.Parameter(torch.randn(3, 4))
    opt = DASHWrapper(
        torch.optim.SGD([w, real], lr=0.1),
        batch_loss=lambda m, b: ((b @ w.T).abs().sum() + (b.real @ real.T).sum()),
    )
    before = w.detach().clone()
    report = opt.on_new_data([torch.randn(5, 4, dtype=torch.complex64)])
    assert report.skipped["param[0]"].startswith("complex dtype") and torch.equal(w, before)
    assert [p.name for p in report.params] == ["param[1]"]


class _ReadOnlyBatch(Mapping):  # type: ignore[type-arg]
    def __init__(self, data: dict[str, Any], tag: str) -> None:
        self._data, self.tag = data, tag

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Any:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def _dict_loss(model: nn.Module, batch: Any) -> torch.Tensor:
    return nn.functional.cross_entropy(model(batch["x"]), batch["y"])


def test_defaultdict_batches_keep_their_type_and_factory() -> None:
    model, opt = _wrapped()
    seen: list[Any] = []

    def loss(m: nn.Module, batch: Any) -> torch.Tensor:
        seen.append(batch)
        return _dict_loss(m, batch)

    x, y = vector_batches(1)[0]
    batch = defaultdict(lambda: "missing", {"x": x, "y": y})
    assert opt.on_new_data([batch], batch_loss=loss).call == 1
    assert type(seen[0]) is defaultdict and seen[0]["other"] == "missing"


def test_read_only_mapping_batches_get_a_clear_error() -> None:
    model, opt = _wrapped()
    before = snapshot(model, opt)
    x, y = vector_batches(1)[0]
    with pytest.raises(TypeError, match="batch of type _ReadOnlyBatch.*read-only Mapping.*batch_loss=fn"):
        opt.on_new_data([_ReadOnlyBatch({"x": x, "y": y}, "t")], batch_loss=_dict_loss)
    assert_unchanged(before, model, opt)


def test_lazy_modules_are_refused_and_stay_lazy() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.Linear(8, 3))
    base = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="lazy parameter that is not yet initialised.*run one forward pass"):
        DASHWrapper(base, model=model, loss_fn=nn.CrossEntropyLoss())
    assert isinstance(model[0], nn.LazyLinear)
    assert isinstance(model[0].weight, nn.parameter.UninitializedParameter)
