"""The inputs of :func:`~torch_dash_optim.experiments.run_protocol`, checked before anything runs or is written.

:func:`check_device` refuses a device torch cannot run on here; :func:`check_protocol` tries
the data, the model, the loss and the metric on the first seed's data, with a model that is
thrown away (see there), so that a run that cannot work ends in one clear message instead of a
traceback part-way, with files left behind. The protocol
(:mod:`torch_dash_optim.experiments.protocol`) and the command line
(:mod:`torch_dash_optim.experiments.cli`) call both first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from ..diagnostics import diagnose
from .config import ProtocolConfig
from .loaders import SplitBatch, batch_sizes, make_loader, tensors_of
from .training import Loss, Metric, _batch_sum

__all__ = ["check_device", "check_protocol"]


def _check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    """``seeds`` as a tuple of distinct integers >= 0; anything else is refused."""
    if isinstance(seeds, int):
        seeds = [seeds]
    seeds = tuple(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"seeds={seeds!r} must be one or more integers >= 0")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {seeds!r} lists one twice")
    return seeds


# -- the device, the data, the objective --------------------------------------------------------
def check_device(device: str | torch.device) -> torch.device:
    """Return ``device`` as a :class:`torch.device` the protocol can run on here, or refuse it.

    Every kind of device is checked as CUDA devices are: it must exist and hold data.

    Parameters
    ----------
    device:
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, ...

    Returns
    -------
    torch.device
        The device.

    Raises
    ------
    ValueError
        For a string that is not a device, the ``meta`` device (it holds no data), and a device
        whose backend torch does not have here, or whose index does not exist; the message
        names the fix.

    Examples
    --------
    >>> check_device("cpu")
    device(type='cpu')
    >>> check_device("meta")
    Traceback (most recent call last):
    ...
    ValueError: device='meta' holds no data (meta tensors have shapes only), so nothing can be trained ...
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device={device!r} is not a device; use cpu, cuda or cuda:N") from None
    kind, name = resolved.type, str(resolved)
    if kind == "meta":
        raise ValueError(
            f"device={name!r} holds no data (meta tensors have shapes only), so nothing can be trained on it; "
            "use cpu or cuda"
        )
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={name!r} was asked for, but torch sees no CUDA GPU; use cpu")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(
                f"device={name!r} does not exist: torch sees {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}; "
                "use one of them"
            )
    elif kind != "cpu":  # mps, xpu, ...: the backend's own is_available(), as for CUDA
        backend = getattr(torch.backends, "mps", None) if kind == "mps" else getattr(torch, kind, None)
        available = getattr(backend, "is_available", None)
        try:
            ok = bool(available()) if callable(available) else False
        except Exception:  # a backend that cannot even say: not available
            ok = False
        if not ok:
            label = "MPS (Apple GPU)" if kind == "mps" else repr(kind)
            raise ValueError(
                f"device={name!r} was asked for, but torch has no {label} backend available here; use cpu (or cuda)"
            )
        count_of = getattr(getattr(torch, kind, None), "device_count", None)
        if resolved.index is not None and callable(count_of) and resolved.index >= count_of():
            raise ValueError(
                f"device={name!r} does not exist: torch sees {count_of()} {kind} device(s); use an index below that"
            )
    return resolved


class _Data:
    """Where each seed's ``(train, test)`` comes from: the same datasets, or ``data(draw)`` per seed."""

    def __init__(
        self,
        train_set: Dataset | None,
        test_set: Dataset | None,
        data: Callable[[int], tuple[Dataset, Dataset]] | None,
        data_seed: int | None,
    ) -> None:
        if data is not None:
            if train_set is not None or test_set is not None:
                raise ValueError("give train_set and test_set, or data=fn, not both")
            if not callable(data):
                raise TypeError(
                    f"data must be a callable data(seed) -> (train_set, test_set); got {type(data).__name__}"
                )
        elif train_set is None or test_set is None:
            raise ValueError(
                "give the data: train_set and test_set (the same for every seed), or data=fn with "
                "fn(seed) -> (train_set, test_set) (a draw per seed)"
            )
        elif data_seed is not None:
            raise ValueError(
                f"data_seed={data_seed!r} is for data=fn, which draws the data from a seed; train_set and test_set "
                "are the same for every seed: drop data_seed"
            )
        if data_seed is not None and (isinstance(data_seed, bool) or not isinstance(data_seed, int) or data_seed < 0):
            raise ValueError(f"data_seed={data_seed!r} must be an integer >= 0, or None (each seed draws its own data)")
        self.fixed = (train_set, test_set) if data is None else None
        self.data, self.data_seed = data, data_seed

    def draw(self, seed: int) -> int | None:
        """The data seed of run seed ``seed`` (``None`` for fixed datasets)."""
        if self.fixed is not None:
            return None
        return seed if self.data_seed is None else self.data_seed

    def load(self, seed: int) -> tuple[Dataset, Dataset]:
        """Run seed ``seed``'s training and test sets."""
        pair = self.fixed if self.fixed is not None else self.data(self.draw(seed))  # type: ignore[misc]
        ok = isinstance(pair, (tuple, list)) and len(pair) == 2
        if not ok or not all(hasattr(d, "__len__") and hasattr(d, "__getitem__") for d in pair):
            what = "train_set and test_set" if self.fixed is not None else f"data({self.draw(seed)})"
            raise TypeError(
                f"{what} must give a (train_set, test_set) pair of map-style datasets (with len() and "
                f"indexing); got {type(pair).__name__}"
            )
        return pair[0], pair[1]

    def settings(self) -> dict[str, Any]:
        """The data seed rule, for ``config.json``."""
        if self.fixed is not None:
            return {"per_seed": False, "data_seed": None}
        return {"per_seed": self.data_seed is None, "data_seed": self.data_seed}


@dataclasses.dataclass(frozen=True)
class _Task:
    """What every run of one call shares besides the data and the model: settings and objective."""

    config: ProtocolConfig
    device: torch.device
    workers: int
    loss_fn: Loss | None = None
    metric: Metric | None = None
    split_batch: SplitBatch | None = None
    diagnostics: bool = True


def _inputs(
    train_set: Dataset | None,
    test_set: Dataset | None,
    model_factory: Callable[[], nn.Module] | None,
    data: Callable[[int], tuple[Dataset, Dataset]] | None,
    data_seed: int | None,
    config: ProtocolConfig,
    device: str | torch.device,
    workers: int,
    loss_fn: Loss | None,
    metric: Metric | None,
    split_batch: SplitBatch | None,
    diagnostics: bool,
) -> tuple[_Data, _Task]:
    """Check the arguments that describe the data, the model and the objective; bundle them."""
    if not isinstance(config, ProtocolConfig):
        raise TypeError(f"config must be a ProtocolConfig; got {type(config).__name__}")
    source = _Data(train_set, test_set, data, data_seed)
    if model_factory is None or not callable(model_factory):
        raise TypeError(
            f"model_factory must be a callable that returns a fresh model (a class or function); got {model_factory!r}"
        )
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be a callable loss_fn(outputs, targets); got {type(loss_fn).__name__}")
    if metric is not None and not isinstance(metric, Metric):
        raise TypeError(
            f"metric must be a Metric(fn, threshold, higher_is_better) (torch_dash_optim.experiments.training.Metric), "
            f"which says when training ends; got {type(metric).__name__}"
        )
    if split_batch is not None and not callable(split_batch):
        raise TypeError(f"split_batch must be a callable batch -> (inputs, targets); got {type(split_batch).__name__}")
    if not isinstance(diagnostics, bool):
        raise TypeError(f"diagnostics={diagnostics!r} must be True or False")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers={workers!r} must be an integer >= 0 (DataLoader workers)")
    task = _Task(config, check_device(device), workers, loss_fn, metric, split_batch, diagnostics)
    return source, task


def _eager(model: nn.Module) -> nn.Module:
    """The module a ``torch.compile``'d model wraps (the same parameters; no compilation), else the model."""
    inner = getattr(model, "_orig_mod", None)
    return inner if type(model).__name__ == "OptimizedModule" and isinstance(inner, nn.Module) else model


# -- the checks before anything runs -------------------------------------------------------------
def check_protocol(
    train_set: Dataset | None = None,
    test_set: Dataset | None = None,
    model_factory: Callable[[], nn.Module] | None = None,
    *,
    data: Callable[[int], tuple[Dataset, Dataset]] | None = None,
    data_seed: int | None = None,
    config: ProtocolConfig | None = None,
    seeds: Sequence[int] = (0,),
    device: str | torch.device = "cpu",
    loss_fn: Loss | None = None,
    metric: Metric | None = None,
    split_batch: SplitBatch | None = None,
    diagnostics: bool = True,
) -> None:
    """Check the inputs of ``run_protocol`` before anything runs; raise a clear error if they cannot work.

    :func:`~torch_dash_optim.experiments.run_protocol` calls it before it writes anything; the
    command line calls it before it creates ``--out``. It checks the device
    (:func:`check_device`) and, on the first seed's data: that every chunk gets an example;
    that the items are ``(input, target)`` pairs (or that ``split_batch`` makes them so); that
    the targets suit the loss and the metric (by default, class indices within the model's
    logits); and that a fresh model, built as the runs build it but thrown away, trains one
    step in train mode on the smallest batch the protocol will give it (so that, say, a
    BatchNorm model is not handed a batch of one), is evaluated on a test batch, and can be
    diagnosed. The global RNG is left as it was.

    Parameters
    ----------
    train_set, test_set, model_factory, data, data_seed, config, seeds, device:
        As for :func:`~torch_dash_optim.experiments.run_protocol` (only the first seed's data are checked).
    loss_fn, metric, split_batch, diagnostics:
        As for :func:`~torch_dash_optim.experiments.run_protocol`.

    Raises
    ------
    ValueError, TypeError
        Naming what cannot work and what to pass instead.

    Examples
    --------
    >>> from torch.utils.data import TensorDataset
    >>> x, y = torch.randn(40, 4), torch.rand(40, 1)   # regression targets
    >>> check_protocol(TensorDataset(x, y), TensorDataset(x, y), lambda: torch.nn.Linear(4, 1),
    ...                config=ProtocolConfig(num_chunks=2))
    Traceback (most recent call last):
    ...
    ValueError: the model gives outputs of shape (20, 1): 1 logit(s) per example, but by default ...
    """
    config = config or ProtocolConfig()
    seeds = _check_seeds(seeds)
    source, task = _inputs(train_set, test_set, model_factory, data, data_seed, config, device, 0, loss_fn, metric,
                           split_batch, diagnostics)
    _preflight(source, model_factory, task, seeds[0])  # type: ignore[arg-type]


_CLASSIFIER = (
    "by default run_protocol trains a classifier (cross-entropy loss, accuracy, a train-accuracy threshold), "
    "which needs one logit per class (at least 2) and integer class indices of shape (batch,) as targets. "
    "For regression or multi-label targets pass loss_fn= (e.g. torch.nn.MSELoss() or torch.nn.BCEWithLogitsLoss()) "
    "and metric=Metric(fn, threshold, higher_is_better) (torch_dash_optim.experiments.training.Metric)"
)


def _preflight(source: _Data, model_factory: Callable[[], nn.Module], task: _Task, seed: int) -> None:
    """The checks of :func:`check_protocol`, on run seed ``seed``'s data."""
    config = task.config
    train, test = source.load(seed)
    n, n_test = len(train), len(test)  # type: ignore[arg-type]
    if n_test < 1:
        raise ValueError("the test set is empty; give it at least one example")
    size = n // config.num_chunks
    if size < 1:
        raise ValueError(  # the words of split_chunks, which would fail on it
            f"the training set has {n} examples, too few for {config.num_chunks} chunks; "
            "lower --chunks or use more data"
        )
    # the smallest training batch of any experiment (the balanced rule of loaders.batch_sizes)
    where = min(range(1, config.num_chunks + 1), key=lambda j: batch_sizes(j * size, config.batch_size)[-1])
    smallest = batch_sizes(where * size, config.batch_size)[-1]
    inputs, targets = _first_batch(train, smallest, task, "training")
    test_inputs, test_targets = _first_batch(test, min(n_test, 8), task, "test")
    devices = [task.device.index or 0] if task.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model = model_factory()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model_factory() returned {type(model).__name__}, not a torch.nn.Module")
        net = _eager(model.to(task.device))
        net.train()
        what = (
            f"a training batch of {smallest} example(s), the smallest the protocol gives it (experiment {where}: "
            f"{where * size} example(s) in batches of at most {config.batch_size})"
        )
        out = _call(lambda: net(inputs), what, smallest)
        _check_outputs(out, targets, task, "training")
        if task.split_batch is None:
            _check_all_targets(train, out, task, "training")
            _check_all_targets(test, out, task, "test")
        loss = _check_loss(task, out, targets)
        _call(loss.backward, f"the backward pass of {what}", smallest)
        _metric_sum(task, out, targets)
        net.eval()
        with torch.no_grad():
            out = _call(lambda: net(test_inputs), "a test batch (in eval mode)", len(test_targets))
            _check_outputs(out, test_targets, task, "test")
            _check_loss(task, out, test_targets)
            _metric_sum(task, out, test_targets)
        if task.diagnostics:
            try:
                diagnose(net, [(inputs, targets)])
            except Exception as err:
                raise ValueError(
                    f"the plasticity diagnostics cannot measure this model ({type(err).__name__}: {_first_line(err)}); "
                    "pass diagnostics=False"
                ) from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


def _first_batch(dataset: Dataset, size: int, task: _Task, which: str) -> tuple[Any, Any]:
    """The first ``size`` examples of ``dataset`` as one batch on the device, as the runs' loaders make them."""
    item = dataset[0]
    if task.split_batch is None:
        if isinstance(item, Mapping):
            keys = list(item)
            example = ", ".join(repr(k) for k in keys[:2]) if len(keys) >= 2 else "'input', 'label'"
            raise ValueError(
                f"the {which} set's items are dicts (keys {', '.join(map(repr, keys))}), but run_protocol trains on "
                "(input, target) pairs: pass split_batch=fn, where fn(batch) gives (inputs, targets) from a collated "
                f"batch (a dict of stacked tensors), e.g. split_batch=lambda b: (b[{example.split(', ')[0]}], "
                f"b[{example.split(', ')[-1]}])"
            )
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            got = f"{type(item).__name__} of {len(item)}" if isinstance(item, (tuple, list)) else type(item).__name__
            raise ValueError(
                f"the {which} set's items must be (input, target) pairs; got a {got}: pass split_batch=fn, where "
                "fn(batch) gives (inputs, targets) from a collated batch"
            )
    loader = make_loader(Subset(dataset, range(size)), size, device=task.device, split_batch=task.split_batch)
    batch = next(iter(loader))
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError(
            f"split_batch must give an (inputs, targets) pair for a batch of the {which} set; "
            f"got {type(batch).__name__}"
        )
    return batch[0], batch[1]


def _call(fn: Callable[[], Any], what: str, size: int) -> Any:
    """``fn()``; an error becomes a one-line ``ValueError`` that names ``what`` failed."""
    try:
        return fn()
    except Exception as err:
        hint = (
            "a batch of one example fails in a BatchNorm layer's train mode: give every chunk at least 2 examples "
            "(more data, or fewer chunks)"
            if size == 1
            else "check that the model takes the data set's inputs"
        )
        raise ValueError(f"the model fails on {what}: {type(err).__name__}: {_first_line(err)}; {hint}") from err


def _check_outputs(out: Any, targets: Any, task: _Task, which: str) -> None:
    """The outputs are a tensor of one row per example and, by default, suit the cross-entropy and the accuracy."""
    if not isinstance(out, Tensor):
        raise TypeError(
            f"the model returned {type(out).__name__}, not a tensor; have it return the outputs the loss takes "
            "(wrap a Hugging Face model to return its .logits)"
        )
    if isinstance(targets, Tensor) and targets.ndim >= 1 and (out.ndim == 0 or out.shape[0] != targets.shape[0]):
        raise ValueError(
            f"the model gives outputs of shape {tuple(out.shape)} for {which} targets of shape "
            f"{tuple(targets.shape)}: both need one row per example"
        )
    default = task.loss_fn is None or task.metric is None
    if not default:
        return
    if not isinstance(targets, Tensor):
        raise TypeError(f"the {which} targets are a {type(targets).__name__}, not a tensor; {_CLASSIFIER}")
    classes = out.shape[1] if out.ndim >= 2 else 1
    if out.ndim < 2 or classes < 2 or (task.metric is None and out.ndim != 2):
        raise ValueError(
            f"the model gives outputs of shape {tuple(out.shape)}: {classes} logit(s) per example, but {_CLASSIFIER}"
        )
    if targets.is_floating_point():
        soft = task.loss_fn is None and task.metric is not None and targets.shape == out.shape  # class probabilities
        if not soft:
            raise ValueError(
                f"the {which} targets are {str(targets.dtype).replace('torch.', '')} of shape {tuple(targets.shape)}, "
                f"not class indices: {_CLASSIFIER}"
            )
        return
    expected = tuple(out.shape[:1] + out.shape[2:])
    if tuple(targets.shape) != expected:
        raise ValueError(
            f"the {which} targets have shape {tuple(targets.shape)} for outputs of shape {tuple(out.shape)}: class "
            f"indices of shape {expected} are needed; {_CLASSIFIER}"
        )
    _check_range(targets, classes, which)


def _check_range(targets: Tensor, classes: int, which: str) -> None:
    if targets.is_floating_point() or targets.dtype == torch.bool or targets.is_complex():
        raise ValueError(
            f"the {which} targets are {str(targets.dtype).replace('torch.', '')}, not class indices: {_CLASSIFIER}"
        )
    if targets.numel() == 0:
        return
    low, high = int(targets.min()), int(targets.max())
    if low < 0 or high >= classes:
        bad = low if low < 0 else high
        raise ValueError(
            f"the {which} targets hold class {bad} but the model gives {classes} logits (classes 0 to "
            f"{classes - 1}); give the model one output per class"
        )


def _check_all_targets(dataset: Dataset, out: Tensor, task: _Task, which: str) -> None:
    """Every class index of a tensor-backed dataset lies within the model's logits (default objective)."""
    if task.loss_fn is not None and task.metric is not None:
        return
    tensors = tensors_of(dataset)
    if tensors is None or len(tensors) != 2 or tensors[1].is_floating_point():
        return
    _check_range(tensors[1], out.shape[1], which)


def _check_loss(task: _Task, out: Tensor, targets: Any) -> Tensor:
    """The loss of a batch: a one-element tensor; a loss that fails is named."""
    criterion = task.loss_fn if task.loss_fn is not None else nn.CrossEntropyLoss()
    try:
        loss = criterion(out, targets)
    except Exception as err:
        target = f"{tuple(targets.shape)} {targets.dtype}" if isinstance(targets, Tensor) else type(targets).__name__
        raise ValueError(
            f"the loss fails on outputs of shape {tuple(out.shape)} and targets {target}: {type(err).__name__}: "
            f"{_first_line(err)}"
        ) from err
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        got = f"shape {tuple(loss.shape)}" if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(f"loss_fn returned {got}; it must return the batch's mean loss, a 0-dim tensor")
    if torch.is_grad_enabled() and not loss.requires_grad:
        raise ValueError("the loss does not depend on the model's parameters (it has no gradient); check loss_fn")
    return loss.reshape(())


def _metric_sum(task: _Task, out: Tensor, targets: Any) -> None:
    """The metric's sum over a batch (its errors, e.g. a wrong shape, surface here)."""
    if task.metric is None:
        return
    n = targets.shape[0] if isinstance(targets, Tensor) else out.shape[0]
    try:
        _batch_sum(task.metric, out, targets, n)
    except ValueError:
        raise
    except Exception as err:
        raise ValueError(
            f"metric {task.metric.name!r} fails on outputs of shape {tuple(out.shape)}: {type(err).__name__}: "
            f"{_first_line(err)}"
        ) from err
