"""The warm-start protocol: K chunks arrive one at a time; train on all so far; compare methods."""

from __future__ import annotations

import dataclasses
import math
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import pickle
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import ConcatDataset, Dataset, Subset

from .._interrupts import deferred_interrupts, sigint_blocked
from ..diagnostics import diagnose
from .checks import _check_seeds, _Data, _eager, _inputs, _preflight, _Task
from .config import METHODS, OPTIMIZERS, ProtocolConfig
from .loaders import SplitBatch, make_loader, split_chunks
from .methods import ALIASES, BUILTIN, Arrival, Learner, Method, get_method
from .store import RunStore, read_config, saved_records, write_config, write_tables
from .training import Loss, Metric, evaluate, train_to_threshold
from .workers import stop_workers

__all__ = [
    "DIAGNOSTIC_SAMPLES",
    "DIAGNOSTIC_TAU",
    "OutputExistsError",
    "SettingsMismatchError",
    "run_protocol",
]

#: Training examples (a fixed random subsample of each seed's training set, the same for every
#: method and experiment) over which the plasticity diagnostics are measured after each experiment.
DIAGNOSTIC_SAMPLES: int = 512
#: ReDo's dormancy threshold of the recorded dormant share (see :func:`torch_dash_optim.diagnostics.diagnose`).
DIAGNOSTIC_TAU: float = 0.025
#: How the training batches are formed (saved with the settings; see :mod:`.loaders`).
_BATCHES = "balanced: ceil(n / batch_size) batches of n // k or n // k + 1 examples"


class OutputExistsError(FileExistsError):
    """The output folder already holds results and ``resume`` was not asked for.

    Examples
    --------
    >>> issubclass(OutputExistsError, FileExistsError)
    True
    """


class SettingsMismatchError(ValueError):
    """``resume`` was asked for an output folder saved with other settings.

    Examples
    --------
    >>> issubclass(SettingsMismatchError, ValueError)
    True
    """


def _experiment_seed(seed: int, experiment: int) -> int:
    """The RNG seed of one experiment of a run (distinct for every seed and experiment)."""
    return int(seed) * 1_000_003 + experiment + 1


def _check_names(kind: str, given: Sequence[str], known: Sequence[str]) -> tuple[str, ...]:
    """``given`` as a tuple of ``known`` names, each once; a bad one is named."""
    if isinstance(given, str):
        given = [given]
    given = tuple(given)
    bad = [g for g in given if g not in known]
    if bad or not given:
        raise ValueError(f"unknown {kind} {bad or given!r}; use some of {', '.join(known)}")
    if len(set(given)) != len(given):
        raise ValueError(f"{kind} {given!r} lists one twice")
    return given


def _check_methods(given: Sequence[str | Method] | str | Method) -> dict[str, Method]:
    """The methods by name, each once; unknown names and objects that take a built-in's name are refused."""
    if isinstance(given, (str, Method)):
        given = [given]
    given = list(given)
    if not given:
        raise ValueError(f"methods is empty; use some of {', '.join(BUILTIN)}, or Method objects")
    bad = [g for g in given if isinstance(g, str) and g not in BUILTIN and g not in ALIASES]
    if bad:
        raise ValueError(f"unknown methods {bad!r}; use some of {', '.join(BUILTIN)}, or Method objects")
    out: dict[str, Method] = {}
    for g in given:
        method = get_method(g)
        if method.name in out:
            raise ValueError(f"methods {[getattr(g, 'name', g) for g in given]!r} lists one twice ({method.name!r})")
        builtin = BUILTIN.get(method.name)
        if builtin is not None and type(method) is not type(builtin):
            raise ValueError(
                f"method {method!r} takes the name {method.name!r} of a built-in method; give it another name"
            )
        out[method.name] = method
    return out


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Any]:
    """A tqdm bar of ``total`` experiments, or ``None`` when disabled or tqdm is missing."""
    bar = None
    if enabled:
        try:
            from tqdm.auto import tqdm
        except ImportError:  # the bar is optional (tqdm, from the experiments extra)
            bar = None
        else:
            bar = tqdm(total=total, unit="exp", dynamic_ncols=True)
    try:
        yield bar
    finally:
        if bar is not None:
            bar.close()



def _settings(task: _Task, setup: dict[str, Any] | None, source: _Data) -> dict[str, Any]:
    """What ``config.json`` saves (and ``resume`` checks): protocol, setup, data rule, batches, objective."""
    settings: dict[str, Any] = {
        "protocol": task.config.to_dict(),
        "setup": dict(setup or {}),
        "data": source.settings(),
        "harness": {
            "batches": _BATCHES,
            "diagnostics": {"samples": DIAGNOSTIC_SAMPLES, "tau": DIAGNOSTIC_TAU} if task.diagnostics else None,
        },
    }
    if task.loss_fn is not None or task.metric is not None:
        metric = task.metric
        settings["objective"] = {
            "loss": "cross_entropy" if task.loss_fn is None else _describe(task.loss_fn),
            "metric": "accuracy" if metric is None else metric.name,
            "threshold": task.config.threshold if metric is None else metric.threshold,
            "higher_is_better": True if metric is None else metric.higher_is_better,
        }
    return settings


def _describe(fn: Any) -> str:
    """A callable's name for the saved settings: a module's repr, else its qualified name."""
    if isinstance(fn, nn.Module):
        return repr(fn)
    return getattr(fn, "__qualname__", None) or type(fn).__name__


# -- the protocol --------------------------------------------------------------------------------
def run_protocol(
    train_set: Dataset | None = None,
    test_set: Dataset | None = None,
    model_factory: Callable[[], nn.Module] | None = None,
    *,
    data: Callable[[int], tuple[Dataset, Dataset]] | None = None,
    data_seed: int | None = None,
    config: ProtocolConfig | None = None,
    methods: Sequence[str | Method] = METHODS,
    optimizers: Sequence[str] = ("sgd",),
    seeds: Sequence[int] = (0,),
    out: str | Path | None = None,
    resume: bool = False,
    device: str | torch.device = "cpu",
    workers: int = 0,
    progress: bool = True,
    setup: dict[str, Any] | None = None,
    jobs: int = 1,
    threads: int = 1,
    loss_fn: Loss | None = None,
    metric: Metric | None = None,
    split_batch: SplitBatch | None = None,
    diagnostics: bool = True,
) -> list[dict[str, Any]]:
    """Run the warm-start protocol of the DASH paper and return one record per experiment.

    For each seed, the training set is split at random into ``config.num_chunks`` equal
    chunks. At experiment ``j`` chunk ``j`` arrives; each method first acts on its model
    (see :class:`~torch_dash_optim.experiments.methods.Method`), then trains on chunks
    ``1..j`` until an epoch's train accuracy reaches ``config.threshold`` (or
    ``config.max_epochs``), and is tested on the test set. All methods of a seed start from
    the same initial model and see the same data, chunks and batch orders. The training
    batches are balanced (:func:`~torch_dash_optim.experiments.loaders.batch_sizes`): an epoch
    never ends in a batch of less than half the batch size. After each experiment the
    plasticity diagnostics (the share of dormant units and the rank of the penultimate
    features, :func:`torch_dash_optim.diagnostics.diagnose`) are measured on a fixed subsample
    of the seed's training set. Before anything runs or is written,
    :func:`~torch_dash_optim.experiments.checks.check_protocol` checks the inputs.

    Parameters
    ----------
    train_set, test_set:
        Map-style datasets of ``(input, class index)`` pairs, the same for every seed.
        Tensor-backed ones (``TensorDataset`` and subsets) are batched from device memory;
        others use a ``DataLoader``. Give these, or ``data``.
    model_factory:
        Returns a freshly initialised model (called under a seeded RNG).
    data:
        ``data(data_seed)`` returns a ``(train_set, test_set)`` pair: each seed of the run gets
        the draw of its own data seed (e.g. a
        :class:`~torch_dash_optim.experiments.datasets.DataSource`). Worker processes call it
        themselves, so it must be cheap (cache what it reads) and, for ``jobs > 1``, picklable.
    data_seed:
        With ``data``: the data seed of every run seed; ``None`` (default): each seed's own
        (run seed ``s`` trains on ``data(s)``). Saved with the settings and in each record.
    config:
        Hyperparameters (default: the authors', see :class:`ProtocolConfig`).
    methods:
        Names of :data:`~torch_dash_optim.experiments.config.METHODS` and your own
        :class:`~torch_dash_optim.experiments.methods.Method` objects (see there for an example).
    optimizers, seeds:
        Some of ``("sgd", "sam")``, and seeds.
    out:
        Folder for results (``runs/``, ``experiments.csv``/``.json``). ``None``: in memory.
    resume:
        Continue a run in ``out`` that was interrupted; without it, an ``out`` that already
        holds results is refused. Finished runs in ``out`` that are not asked for this time
        (other methods or seeds) keep their rows in the tables, after the others.
    device:
        ``"cpu"``, ``"cuda"``, ... (checked by :func:`~torch_dash_optim.experiments.checks.check_device`).
    workers:
        DataLoader workers for datasets that are not tensor-backed.
    progress:
        Show a progress bar (needs ``tqdm``).
    setup:
        Extra description of the data and model (saved in ``config.json``, checked on resume).
    jobs:
        Number of worker processes (``spawn`` context) running independent ``(seed, optimizer,
        method)`` runs at the same time; 1 runs everything in this process. Each worker uses
        ``threads`` torch threads, and with ``device="cuda"`` (no index) worker *i* uses GPU
        ``i % torch.cuda.device_count()``. The records are bit-identical to those of ``jobs=1``
        run with the same number of torch threads, and ``resume`` works the same. Workers need
        a picklable ``model_factory`` (a module-level function, class or
        :func:`functools.partial`), picklable data (datasets or ``data``), methods, loss,
        metric and ``split_batch``. On :class:`KeyboardInterrupt` (Ctrl-C) the workers are
        stopped at once and what finished is kept for ``resume``; while they run, a Ctrl-C is
        recorded and acted on between two polls of the workers, never raised inside
        ``multiprocessing``'s own code.
    threads:
        torch threads of each worker (``jobs > 1`` only; a run in this process uses the
        caller's setting).
    loss_fn:
        ``loss_fn(outputs, targets)``, the batch's mean loss, for training, testing and the
        methods' gradient passes; ``None``: the cross-entropy (the targets are then class
        indices). For regression or multi-label targets give it with ``metric``.
    metric:
        A :class:`~torch_dash_optim.experiments.training.Metric`: what ends each experiment's
        training (its ``threshold``, instead of ``config.threshold`` on the train accuracy)
        and what is tested. Its values go to the records' ``train_metric`` and
        ``test_metric``, and ``train_acc``/``test_acc`` are then ``None``. ``None``: the
        accuracy.
    split_batch:
        Turns each batch of the datasets, as collated, into ``(inputs, targets)``: e.g.
        ``lambda b: (b["pixel_values"], b["label"])`` for a dataset of dicts. ``None``: the
        items are ``(input, target)`` pairs.
    diagnostics:
        Measure the dormant share and feature rank after each experiment (on
        :data:`~torch_dash_optim.experiments.protocol.DIAGNOSTIC_SAMPLES` training examples;
        a few percent of the run's time).

    Returns
    -------
    list of dict
        Keys :data:`~torch_dash_optim.experiments.store.RECORD_FIELDS`; accuracies in [0, 1].

    Raises
    ------
    ValueError, TypeError
        For inputs that cannot work (see
        :func:`~torch_dash_optim.experiments.checks.check_protocol`), before anything is written.
    OutputExistsError, SettingsMismatchError
        For an ``out`` that holds results without ``resume``, or other settings with it.
    ~torch_dash_optim.experiments.store.CorruptRunError
        On ``resume``, for a run file under ``out/runs`` that cannot be read (names it).

    Examples
    --------
    >>> from torch.utils.data import TensorDataset
    >>> x, y = torch.randn(60, 4), torch.randint(0, 2, (60,))
    >>> records = run_protocol(TensorDataset(x[:40], y[:40]), TensorDataset(x[40:], y[40:]),
    ...                        lambda: torch.nn.Linear(4, 2), methods=["warm", "dash"],
    ...                        config=ProtocolConfig(num_chunks=2, lr=0.1, max_epochs=3),
    ...                        progress=False)
    >>> [(r["method"], r["experiment"]) for r in records]
    [('warm', 1), ('warm', 2), ('dash', 1), ('dash', 2)]

    Data drawn per seed, and a regression model (a loss, and a metric with its threshold):

    >>> from torch_dash_optim.experiments.training import Metric
    >>> def draw(seed):
    ...     g = torch.Generator().manual_seed(seed)
    ...     x = torch.randn(60, 4, generator=g)
    ...     y = x.sum(1, keepdim=True)
    ...     return TensorDataset(x[:40], y[:40]), TensorDataset(x[40:], y[40:])
    >>> mae = Metric(lambda out, y: (out - y).abs().mean(1), threshold=0.1, higher_is_better=False, name="mae")
    >>> records = run_protocol(model_factory=lambda: torch.nn.Linear(4, 1), data=draw, seeds=[0, 1],
    ...                        loss_fn=torch.nn.MSELoss(), metric=mae, methods=["warm"],
    ...                        config=ProtocolConfig(num_chunks=2, lr=0.1, max_epochs=3), progress=False)
    >>> [(r["seed"], r["data_seed"], r["test_acc"], r["test_metric"] > 0) for r in records if r["experiment"] == 2]
    [(0, 0, None, True), (1, 1, None, True)]
    """
    config = config or ProtocolConfig()
    by_name = _check_methods(methods)
    methods = tuple(by_name)
    optimizers = _check_names("optimizers", optimizers, OPTIMIZERS)
    seeds = _check_seeds(seeds)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs={jobs!r} must be an integer >= 1 (1: run everything in this process)")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads={threads!r} must be an integer >= 1")
    source, task = _inputs(train_set, test_set, model_factory, data, data_seed, config, device, workers, loss_fn,
                           metric, split_batch, diagnostics)
    assert model_factory is not None  # checked by _inputs
    runs = [(s, o, m) for s in seeds for o in optimizers for m in methods]
    if jobs > 1 and len(runs) > 1:
        _check_picklable(jobs, model_factory, source, task, by_name)
    _preflight(source, model_factory, task, seeds[0])
    settings = _settings(task, setup, source)
    out_dir = Path(out) if out is not None else None
    kept: list[dict[str, Any]] = []
    if out_dir is not None:
        _prepare_out(out_dir, settings, resume)
        kept = [r for r in saved_records(out_dir) if (r["seed"], r["optimizer"], r["method"]) not in set(runs)]
    done: dict[tuple[int, str, str], list[dict[str, Any]]] = {}

    def finished(key: tuple[int, str, str], records: list[dict[str, Any]]) -> None:
        done[key] = records
        if out_dir is not None:
            write_tables(out_dir, [r for k in runs if k in done for r in done[k]] + kept, settings)

    with _progress(len(runs) * config.num_chunks, progress) as bar:
        pending = []
        for key in runs:
            store = RunStore(out_dir, key[2], key[1], key[0]) if out_dir is not None else None
            if store is not None and store.load_records()[1]:  # finished before: no work, no worker
                finished(key, _run_one(by_name[key[2]], key[1], key[0], None, model_factory, task, store, bar))
            else:
                pending.append(key)
        if jobs == 1 or len(pending) <= 1:
            cache: dict[int, _SeedData] = {}
            for seed, opt_name, method in pending:
                store = RunStore(out_dir, method, opt_name, seed) if out_dir is not None else None
                data_of_seed = _cached_seed_data(cache, source, seed, task)
                finished(
                    (seed, opt_name, method),
                    _run_one(by_name[method], opt_name, seed, data_of_seed, model_factory, task, store, bar),
                )
        else:
            _run_parallel(pending, min(jobs, len(pending)), threads, source, model_factory, task, out_dir, bar,
                          finished, by_name)
    return [r for key in runs for r in done[key]]


def _check_picklable(
    jobs: int, model_factory: Callable[[], nn.Module], source: _Data, task: _Task, methods: dict[str, Method]
) -> None:
    """Everything a worker process receives must pickle; what does not is named, with the fix."""
    parts: list[tuple[str, Any]] = [("model_factory", model_factory)]
    parts += [("data", source.data)] if source.fixed is None else []  # datasets: too large to pickle twice
    parts += [(name, getattr(task, name)) for name in ("loss_fn", "metric", "split_batch") if getattr(task, name)]
    parts += [(f"method {n!r}", m) for n, m in methods.items()]
    for what, obj in parts:
        try:
            pickle.dumps(obj)
        except Exception as err:
            raise ValueError(
                f"jobs={jobs} runs the experiments in worker processes, which need a picklable {what} "
                f"(a module-level function, class or functools.partial), not {obj!r} ({err}); "
                "use jobs=1 or such a one"
            ) from None


@dataclasses.dataclass
class _SeedData:
    """One seed's data, as its runs use it: the chunks, the test loader and the diagnostics' subsample."""

    draw: int | None
    chunks: list[Subset]
    test_loader: Any
    probe: Any


def _seed_data(source: _Data, seed: int, task: _Task) -> _SeedData:
    """Load run seed ``seed``'s data, split it into chunks and build its loaders."""
    config = task.config
    train, test = source.load(seed)
    chunks = split_chunks(train, config.num_chunks, torch.Generator().manual_seed(seed))
    kwargs = dict(device=task.device, workers=task.workers, split_batch=task.split_batch)
    test_loader = make_loader(test, config.test_batch_size, **kwargs)  # type: ignore[arg-type]
    probe = None
    if task.diagnostics:  # the same examples for every method and experiment of the seed
        pool = ConcatDataset(chunks)
        generator = torch.Generator().manual_seed(_experiment_seed(seed, config.num_chunks))  # no experiment's
        order = torch.randperm(len(pool), generator=generator)
        sample = Subset(pool, order[:DIAGNOSTIC_SAMPLES].tolist())
        probe = make_loader(sample, config.test_batch_size, **kwargs)  # type: ignore[arg-type]
    return _SeedData(source.draw(seed), chunks, test_loader, probe)


def _cached_seed_data(cache: dict[int, _SeedData], source: _Data, seed: int, task: _Task) -> _SeedData:
    """:func:`_seed_data`, keeping the last two seeds' (runs come seed by seed)."""
    if seed not in cache:
        while len(cache) >= 2:
            cache.pop(next(iter(cache)))
        cache[seed] = _seed_data(source, seed, task)
    return cache[seed]


def _worker_devices(device: torch.device, jobs: int) -> list[torch.device]:
    """Each worker's device: with ``cuda`` and no index, the visible GPUs in turn."""
    if device.type == "cuda" and device.index is None and torch.cuda.device_count() > 0:
        count = torch.cuda.device_count()
        return [torch.device("cuda", i % count) for i in range(jobs)]
    return [device] * jobs


_WORKER: dict[str, Any] = {}


class _QueueBar:
    """Forwards a worker's progress-bar calls to the parent through a queue."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def set_postfix_str(self, text: str, refresh: bool = False) -> None:
        self.queue.put(("postfix", text))

    def update(self, n: int) -> None:
        self.queue.put(("update", n))


def _init_worker(
    source: _Data,
    model_factory: Callable[[], nn.Module],
    task: _Task,
    out_dir: Path | None,
    threads: int,
    devices: Any,
    messages: Any,
    methods: dict[str, Method],
) -> None:
    """Set a worker process up: Ctrl-C ignored, its threads, its device and what its runs share."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the workers on Ctrl-C
    torch.set_num_threads(threads)
    parent = mp.parent_process()
    if parent is not None:  # exit when the parent dies (killed, not interrupted): nothing is half-written
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()
    _WORKER.update(
        source=source,
        model_factory=model_factory,
        task=dataclasses.replace(task, device=devices.get()),
        out_dir=out_dir,
        methods=methods,
        bar=_QueueBar(messages) if messages is not None else None,
        cache={},
    )


def _exit_with(sentinel: int) -> None:
    """Exit this worker as soon as ``sentinel`` (the parent process) is gone."""
    mp_connection.wait([sentinel])
    os._exit(1)


def _work(key: tuple[int, str, str]) -> tuple[tuple[int, str, str], list[dict[str, Any]]]:
    """Run one ``(seed, optimizer, method)`` in a worker, loading the seed's data itself; return the key and records."""
    seed, opt_name, method = key
    w = _WORKER
    data_of_seed = _cached_seed_data(w["cache"], w["source"], seed, w["task"])
    store = RunStore(w["out_dir"], method, opt_name, seed) if w["out_dir"] is not None else None
    records = _run_one(w["methods"][method], opt_name, seed, data_of_seed, w["model_factory"], w["task"], store,
                       w["bar"])
    return key, records


def _run_parallel(
    pending: list[tuple[int, str, str]],
    jobs: int,
    threads: int,
    source: _Data,
    model_factory: Callable[[], nn.Module],
    task: _Task,
    out_dir: Path | None,
    bar: Any,
    finished: Callable[[tuple[int, str, str], list[dict[str, Any]]], None],
    methods: dict[str, Method],
) -> None:
    """Run ``pending`` in ``jobs`` worker processes, handing each finished run to ``finished`` in order."""
    # Everything below runs with Ctrl-C recorded, never raised: multiprocessing's queues and the
    # pool are not safe against an exception between two bytecodes (a lock taken and not given
    # back deadlocks the queue's finalizer at exit). The loop polls the record and stops cleanly.
    with deferred_interrupts() as ctrl_c:
        ctx = mp.get_context("spawn")
        devices = ctx.Queue()
        for d in _worker_devices(task.device, jobs):
            devices.put(d)
        messages = ctx.Queue() if bar is not None else None
        initargs = (source, model_factory, task, out_dir, threads, devices, messages, methods)
        results: dict[tuple[int, str, str], list[dict[str, Any]]] = {}
        order = list(pending)
        pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=initargs)
        try:
            with sigint_blocked():  # workers start with SIGINT blocked, then ignore it: Ctrl-C reaches only us
                futures = {pool.submit(_work, key) for key in pending}
            while futures:
                if ctrl_c:
                    ctrl_c.clear()  # acted on here: not delivered again on leaving
                    raise KeyboardInterrupt
                ready, futures = wait(futures, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(messages, bar)
                for future in ready:
                    key, records = future.result()
                    results[key] = records
                # hand finished runs over in the sequential order, so the tables grow as they would
                while order and order[0] in results:
                    key = order.pop(0)
                    finished(key, results.pop(key))
            pool.shutdown(wait=True)
            _drain(messages, bar)
        except BaseException:
            stop_workers(pool)
            if out_dir is not None:  # temporary files of writes the stop cut short
                for tmp in (out_dir / "runs").glob(".*.tmp*"):
                    tmp.unlink(missing_ok=True)
            raise
        finally:  # the workers are gone: close our ends of the queues now, not in a finalizer at exit
            for q in (devices, messages):
                if q is not None:
                    q.close()
                    q.join_thread()
def _drain(messages: Any, bar: Any) -> None:
    """Apply the workers' queued progress-bar calls to ``bar``."""
    if messages is None:
        return
    while True:
        try:
            kind, value = messages.get_nowait()
        except queue.Empty:
            return
        except (OSError, ValueError):  # the queue was closed while shutting down
            return
        if kind == "update":
            bar.update(value)
        else:
            bar.set_postfix_str(value, refresh=False)


def _prepare_out(out: Path, settings: dict[str, Any], resume: bool) -> None:
    """Check ``out`` against ``resume`` and the saved settings, then write ``config.json``."""
    saved = read_config(out)
    has_results = (out / "runs").is_dir() and any((out / "runs").iterdir())
    if not resume and (saved is not None or has_results):
        raise OutputExistsError(
            f"{out} already holds results; pass resume=True to continue that run, or choose another out"
        )
    if resume and saved is not None and saved != settings:
        diffs = sorted(
            f"{part}.{k}: saved {saved.get(part, {}).get(k)!r}, now {settings[part].get(k)!r}"
            for part in settings
            for k in set(settings[part]) | set(saved.get(part, {}))
            if saved.get(part, {}).get(k) != settings[part].get(k)
        )
        raise SettingsMismatchError(
            f"cannot resume {out}: its settings differ ({'; '.join(diffs)}); "
            "use the same settings, or a new --out"
        )
    write_config(out, settings)




def _run_one(
    method: Method,
    opt_name: str,
    seed: int,
    data: _SeedData | None,
    model_factory: Callable[[], nn.Module],
    task: _Task,
    store: RunStore | None,
    bar: Any,
) -> list[dict[str, Any]]:
    """Run one ``(seed, optimizer, method)`` over every chunk, from its checkpoint if any; return its records.

    ``data`` is ``None`` only for a run that ``store`` holds complete (nothing to run).
    """
    name, config, device = method.name, task.config, task.device
    records: list[dict[str, Any]] = []
    checkpoint = None
    if store is not None:
        records, complete = store.load_records()
        if complete:
            store.ckpt_path.unlink(missing_ok=True)  # left by a crash right after the run finished
            _advance(bar, len(records), name, opt_name, seed, records)
            return records
        checkpoint = store.load_checkpoint()
        records = list(checkpoint["records"]) if checkpoint is not None else []
    assert data is not None
    chunks = data.chunks
    torch.manual_seed(seed)
    learner = method.new_learner(model_factory().to(device), opt_name, config)
    if checkpoint is not None:
        _restore(learner, checkpoint, device)
    _advance(bar, len(records), name, opt_name, seed, records)
    loaders = dict(device=device, workers=task.workers, split_batch=task.split_batch)

    for j in range(len(records), config.num_chunks):
        start, cpu_start = time.perf_counter(), time.process_time()
        torch.manual_seed(_experiment_seed(seed, j))
        seen = ConcatDataset(chunks[: j + 1])
        learner.info.clear()
        if j > 0:
            arrival = Arrival(
                opt_name,
                config,
                model_factory,
                lambda seen=seen: make_loader(seen, len(chunks[0]), **loaders),  # type: ignore[arg-type]
                device,
                loss_fn=task.loss_fn,
            )
            learner = method.on_new_data(learner, arrival)
        generator = torch.Generator().manual_seed(_experiment_seed(seed, j))
        loader = make_loader(
            seen, config.batch_size, shuffle=True, generator=generator, balanced=True, **loaders  # type: ignore[arg-type]
        )
        result = train_to_threshold(
            learner.model,
            learner.optimizer,
            loader,
            config,
            sam=opt_name == "sam",
            penalty=learner.penalty,
            loss_fn=task.loss_fn,
            metric=task.metric,
        )
        value, test_loss = evaluate(learner.model, data.test_loader, loss_fn=task.loss_fn, metric=task.metric)
        diag_start = time.perf_counter()
        dormant, rank = _plasticity(learner.model, data.probe)
        diag_seconds = time.perf_counter() - diag_start
        custom = task.metric is not None
        records.append(
            {
                "method": name,
                "optimizer": opt_name,
                "seed": seed,
                "data_seed": data.draw,
                "experiment": j + 1,
                "num_train": len(seen),
                "epochs": result.epochs,
                "steps": result.steps,
                "train_acc": result.train_acc,
                "train_loss": result.train_loss,
                "test_acc": None if custom else value,
                "test_loss": test_loss,
                "train_metric": result.train_metric,
                "test_metric": value if custom else None,
                "diverged": result.diverged,
                "dash_mean_factor": learner.info.get("dash_mean_factor"),
                "dash_at_floor": learner.info.get("dash_at_floor"),
                "dormant": dormant,
                "feature_rank": rank,
                "seconds": round(time.perf_counter() - start, 3),
                "cpu_seconds": round(time.process_time() - cpu_start, 3),
                "diagnostics_seconds": round(diag_seconds, 3) if data.probe is not None else None,
                "dash_factors": learner.info.get("dash_factors"),
            }
        )
        if store is not None:
            last = j + 1 == config.num_chunks
            store.save(records, None if last else _state(learner))
        _advance(bar, 1, name, opt_name, seed, records)
    return records


def _plasticity(model: nn.Module, probe: Any) -> tuple[float | None, int | None]:
    """The dormant share and the penultimate feature rank of ``model`` over ``probe`` (``None``: not measured)."""
    if probe is None:
        return None, None
    found = diagnose(_eager(model), probe, tau=DIAGNOSTIC_TAU, max_feature_rows=DIAGNOSTIC_SAMPLES)
    dormant = found.dormant
    rank = found.features.rank if found.features is not None else None
    return (
        None if dormant is None or not math.isfinite(dormant) else round(dormant, 6),
        None if rank is None or (isinstance(rank, float) and not math.isfinite(rank)) else int(rank),
    )


def _state(learner: Learner) -> dict[str, Any]:
    """What a checkpoint keeps of a learner: model, optimizer and L2-init anchors."""
    state: dict[str, Any] = {
        "model": learner.model.state_dict(),
        "optimizer": learner.optimizer.state_dict(),
    }
    if learner.penalty is not None:
        state["anchors"] = learner.penalty.anchors
    return state


def _restore(learner: Learner, checkpoint: dict[str, Any], device: torch.device) -> None:
    """Load a checkpoint of :func:`_state` into a fresh learner."""
    learner.model.load_state_dict(checkpoint["model"])
    learner.optimizer.load_state_dict(checkpoint["optimizer"])
    if learner.penalty is not None:
        learner.penalty.anchors = [a.to(device) for a in checkpoint["anchors"]]


def _advance(bar: Any, n: int, method: str, opt_name: str, seed: int, records: list[dict[str, Any]]) -> None:
    """Move the bar ``n`` experiments on, showing the last record."""
    if bar is None or n == 0:
        return
    last = records[-1]
    if last.get("test_acc") is not None:
        score = f"test {100 * last['test_acc']:.1f}%"
    else:
        score = f"test metric {last.get('test_metric') or 0.0:.4g}"
    bar.set_postfix_str(f"{method}/{opt_name} seed {seed} exp {last['experiment']}: {score}, {last['steps']} steps",
                        refresh=False)
    bar.update(n)
