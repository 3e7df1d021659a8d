"""``tol=``: skipping the batches the EMA can no longer see, tested against the exact EMA."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from torch_dash_optim import DASHWrapper
from torch_dash_optim.tolerance import check_tol, kept_batches, skippable, trim_loader

ALPHA = 0.3


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def _batches(n: int, size: int = 8, seed: int = 1) -> list[tuple[Tensor, Tensor]]:
    """Learnable batches (labels from a fixed linear map), so that DASH factors are not all at the floor."""
    gen = torch.Generator().manual_seed(seed)
    teacher = torch.randn(6, 3, generator=gen)
    xs = [torch.randn(size, 6, generator=gen) for _ in range(n)]
    return [(x, (x @ teacher).argmax(dim=1)) for x in xs]


def _wrapper(model: nn.Module, **kw: Any) -> DASHWrapper:
    return DASHWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss(), alpha=ALPHA, **kw
    )


def _run(loader: Any, model: nn.Module | None = None, **kw: Any) -> tuple[nn.Module, Any]:
    model = model if model is not None else _model()
    tol = kw.pop("tol", None)
    report = _wrapper(model, **kw).on_new_data(loader, tol=tol)
    return model, report


def _state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


# -- the arithmetic ----------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.05, 0.3, 0.5, 0.9])
@pytest.mark.parametrize("tol", [0.3, 1e-2, 1e-4, 1e-9])
def test_kept_batches_is_the_fewest_whose_predecessors_weigh_at_most_tol(alpha: float, tol: float) -> None:
    m = kept_batches(alpha, tol)
    assert (1 - alpha) ** m <= tol
    assert m == 1 or (1 - alpha) ** (m - 1) > tol
    for n in (1, m, m + 1, 3 * m):
        skip = skippable(n, alpha, tol)
        assert skip == max(0, n - m)
        # what is skipped weighs at most tol in the exact EMA over n batches
        assert sum(alpha * (1 - alpha) ** (n - i) for i in range(1, skip + 1)) <= tol


def test_the_issue_figures() -> None:
    assert kept_batches(0.3, 1e-4) == 26  # "below 1e-4 after 26 batches"
    assert skippable(50, 0.3, 1e-4) == 24  # about half of the paper's last experiment


@pytest.mark.parametrize("bad", [-1e-3, 1.0, 2, float("nan"), float("inf"), np.float32(1.5)])
def test_bad_tol_is_refused_with_the_fix(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"outside \[0, 1\); use 0"):
        check_tol(bad)
    with pytest.raises(ValueError, match="tol="):
        _wrapper(_model(), tol=bad)


@pytest.mark.parametrize("bad", [True, "1e-4", None, torch.tensor(1e-4)])
def test_a_tol_that_is_not_a_number_is_refused_for_its_type(bad: Any) -> None:
    with pytest.raises(TypeError, match=r"tol must be a number in \[0, 1\); got .* of type"):
        check_tol(bad)
    with pytest.raises(TypeError, match="tol must be"):
        _wrapper(_model(), tol=bad)


@pytest.mark.parametrize("tol", [np.float32(1e-4), np.float64(1e-4), np.float16(1e-3)])
def test_numpy_scalars_are_accepted_as_tol(tol: Any) -> None:
    assert check_tol(tol) == float(tol)
    assert _wrapper(_model(), tol=tol).config.tol == float(tol)


def test_a_tiny_alpha_with_tol_keeps_every_batch_instead_of_dividing_by_zero() -> None:
    # 1 - 1e-17 rounds to 1.0: log(1 - alpha) was 0 (ZeroDivisionError), and the guards looped forever
    assert kept_batches(1e-17, 1e-4) > 10**17
    assert skippable(1000, 1e-17, 1e-4) == 0
    model = _model()
    opt = DASHWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=nn.CrossEntropyLoss(), alpha=1e-17, tol=1e-4
    )
    report = opt.on_new_data(_batches(3))
    assert report.skipped_batches == 0 and report.num_batches == 3


def test_tol_with_average_mean_is_refused_everywhere() -> None:
    with pytest.raises(ValueError, match="needs average='ema'.*pass tol=0"):
        _wrapper(_model(), average="mean", tol=1e-4)
    opt = _wrapper(_model(), average="mean")
    before = _state(opt.model)
    with pytest.raises(ValueError, match="needs average='ema'"):
        opt.on_new_data(_batches(40), tol=1e-4)
    assert all(torch.equal(v, before[k]) for k, v in opt.model.state_dict().items())
    assert opt.on_new_data(_batches(40), tol=0).skipped_batches == 0  # tol=0 is fine with mean


def test_tol_zero_is_the_exact_path_untouched() -> None:
    gen = (b for b in _batches(3))
    assert trim_loader(gen, alpha=ALPHA, average="ema", tol=0.0) == (gen, 0)
    loader = DataLoader(TensorDataset(torch.randn(40, 6)), batch_size=1)
    assert trim_loader(loader, alpha=ALPHA, average="ema", tol=0.0)[0] is loader
    assert trim_loader(loader, alpha=ALPHA, average="mean", tol=0.5)[0] is loader
    short = _batches(10)  # nothing weighs little enough: the loader itself is used
    assert trim_loader(short, alpha=ALPHA, average="ema", tol=1e-4) == (short, 0)


# -- against the exact EMA -----------------------------------------------------------------------


def _unit_norms(name: str, t: Tensor) -> Tensor:
    return t.reshape(1, -1).norm(dim=1) if name.endswith("bias") else t.norm(dim=1)


def test_factors_are_within_the_documented_bound_of_exact() -> None:
    n, tol, lambd = 14, 0.2, 0.0  # a loose tol so that the difference is visible
    batches = _batches(n)
    m = kept_batches(ALPHA, tol)
    skip = n - m
    model = _model()
    exact_model, exact = _run(batches, copy.deepcopy(model), lambd=lambd)
    approx_model, approx = _run(batches, copy.deepcopy(model), lambd=lambd, tol=tol)
    assert (exact.skipped_batches, approx.skipped_batches) == (0, skip)
    assert (exact.num_batches, approx.num_batches) == (n, m)

    # Per-batch gradients at the starting weights (eval mode, as the pass runs).
    grads: list[dict[str, Tensor]] = []
    for x, y in batches:
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
    weight = (1 - ALPHA) ** m - (1 - ALPHA) ** n
    assert weight < tol
    worst = 0.0
    for name, f_exact in exact.factors.items():
        g = sum(ALPHA * (1 - ALPHA) ** (n - 1 - i) * -grads[i][name] for i in range(n))
        biggest = torch.stack([_unit_norms(name, grads[i][name]) for i in range(skip)]).amax(dim=0)
        bound = torch.clamp(2 * weight * biggest / _unit_norms(name, g), max=1 - lambd)
        diff = (approx.factors[name] - f_exact).abs().flatten()
        assert torch.all(diff <= bound + 1e-6), (name, diff, bound)
        worst = max(worst, float(diff.max()))
    assert worst > 1e-4  # the approximation is not the exact path in disguise


@pytest.mark.parametrize("kind", ["list", "tuple", "sequence", "sized"])
def test_tol_equals_the_exact_pass_over_the_kept_batches(kind: str) -> None:
    n, tol = 40, 1e-4
    batches = _batches(n)
    m = kept_batches(ALPHA, tol)
    loader: Any = {
        "list": batches,
        "tuple": tuple(batches),
        "sequence": _CountingSequence(batches),
        "sized": _SizedIterable(batches),
    }[kind]
    model, report = _run(loader, tol=tol)
    reference, _ = _run(batches[n - m :])
    assert (report.skipped_batches, report.num_batches) == (n - m, m)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, reference.state_dict()[k], rtol=1e-5, atol=1e-7)
    if kind == "sequence":
        assert loader.read == list(range(n - m, n))  # skipped batches were never read
    if kind == "sized":
        assert loader.produced == n  # a plain iterable has to produce the skipped batches


def test_tol_1e4_moves_factors_little_on_a_long_loader() -> None:
    batches = _batches(60)
    exact_model, exact = _run(batches)
    approx_model, approx = _run(batches, tol=1e-4)
    assert approx.skipped_batches == 34
    worst = max(float((approx.factors[k] - f).abs().max()) for k, f in exact.factors.items())
    assert worst < 1e-3


# -- DataLoaders ---------------------------------------------------------------------------------


class _Recording(Dataset):
    """A map-style dataset that records which indices were read."""

    def __init__(self, n: int) -> None:
        gen = torch.Generator().manual_seed(3)
        self.x, self.y = torch.randn(n, 6, generator=gen), torch.randint(0, 3, (n,), generator=gen)
        self.read: list[int] = []

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        self.read.append(i)
        return self.x[i], self.y[i]


def _collate(items: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


@pytest.mark.parametrize("shuffle", [False, True])
def test_dataloader_skips_without_loading_and_keeps_its_order_and_draws(shuffle: bool) -> None:
    data = _Recording(8 * 40)
    tol = 1e-4
    m = kept_batches(ALPHA, tol)

    def loader() -> DataLoader:
        return DataLoader(
            data, batch_size=8, shuffle=shuffle, collate_fn=_collate, generator=torch.Generator().manual_seed(5)
        )

    torch.manual_seed(11)
    full = [y.tolist() for _, y in loader()]
    order = list(data.read)
    data.read.clear()
    torch.manual_seed(11)
    trimmed, skip = trim_loader(loader(), alpha=ALPHA, average="ema", tol=tol)
    assert skip == 40 - m and len(trimmed) == m
    assert [y.tolist() for _, y in trimmed] == full[skip:]  # the same batches, in the same order
    assert data.read == order[8 * skip :]  # skipped samples never read

    data.read.clear()
    model, report = _run(loader(), tol=tol)
    reference, _ = _run([(x, y) for x, y in loader()][skip:])
    assert report.skipped_batches == skip
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, reference.state_dict()[k], rtol=1e-5, atol=1e-7)


def test_dataloader_keeps_its_settings_and_works_with_workers() -> None:
    data = TensorDataset(torch.arange(60.0).reshape(30, 2), torch.arange(30))
    loader = DataLoader(
        data,
        batch_size=1,
        num_workers=1,
        collate_fn=_collate,
        timeout=30,
        prefetch_factor=3,
        generator=torch.Generator().manual_seed(0),
    )
    trimmed, skip = trim_loader(loader, alpha=ALPHA, average="ema", tol=1e-4)
    assert skip == 4
    inner = trimmed.batches  # type: ignore[attr-defined]
    assert isinstance(inner, DataLoader) and inner is not loader and inner.dataset is data
    same = ("num_workers", "collate_fn", "timeout", "prefetch_factor", "generator", "pin_memory")
    assert {k: getattr(inner, k) for k in same} == {k: getattr(loader, k) for k in same}
    assert [int(y) for _, y in trimmed] == list(range(4, 30))


def test_dataloader_without_batching() -> None:
    data = _Recording(40)
    loader = DataLoader(data, batch_size=None)
    trimmed, skip = trim_loader(loader, alpha=ALPHA, average="ema", tol=1e-4)
    assert skip == 14 and [int(y) for _, y in trimmed] == data.y[14:].tolist()
    assert data.read == list(range(14, 40))


class _Stream(IterableDataset):
    def __init__(self, n: int) -> None:
        self.batches, self.produced = _batches(n), 0

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for b in self.batches:
            self.produced += 1
            yield b


class _SizedStream(_Stream):
    def __len__(self) -> int:
        return len(self.batches)


def test_iterable_dataset_with_len_is_trimmed_after_loading() -> None:
    stream = _SizedStream(40)
    loader = DataLoader(stream, batch_size=None)
    model, report = _run(loader, tol=1e-4)
    reference, _ = _run(stream.batches[14:])
    assert report.skipped_batches == 14 and stream.produced == 40  # produced, then dropped
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, reference.state_dict()[k], rtol=1e-5, atol=1e-7)


def test_loaders_without_len_are_refused_before_anything_changes() -> None:
    model = _model()
    before = _state(model)
    opt = _wrapper(model, tol=1e-4)
    stream = DataLoader(_Stream(40), batch_size=None)
    for loader in ((b for b in _batches(40)), stream):
        with pytest.raises(TypeError, match=r"tol=0.0001 needs len\(loader\).*Pass tol=0"):
            opt.on_new_data(loader)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert opt.on_new_data((b for b in _batches(40)), tol=0).skipped_batches == 0  # the per-call override


def test_a_len_that_promises_too_much_fails_and_changes_nothing() -> None:
    loader = _SizedIterable(_batches(30), claimed=40)  # 40 claimed: 14 skipped, only 16 follow
    model = _model()
    before = _state(model)
    with pytest.raises(ValueError, match="only 16 came after them instead of 26"):
        _run(loader, model, tol=1e-4)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    model, report = _run(_SizedIterable(_batches(50), claimed=40), tol=1e-4)  # more than promised: fine
    assert report.skipped_batches == 14 and report.num_batches == 36


def test_dataloader_subclass_falls_back_to_loading() -> None:
    class Mine(DataLoader):
        pass

    data = _Recording(40)
    trimmed, skip = trim_loader(Mine(data, batch_size=1, collate_fn=_collate), alpha=ALPHA, average="ema", tol=1e-4)
    assert skip == 14 and len(list(trimmed)) == 26 and len(data.read) == 40


# -- helpers -------------------------------------------------------------------------------------


class _CountingSequence(Sequence):
    def __init__(self, items: list[Any]) -> None:
        self.items, self.read = items, []

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: Any) -> Any:
        assert isinstance(i, int), "only integer indexing"
        self.read.append(i)
        return self.items[i]


class _SizedIterable:
    def __init__(self, items: list[Any], claimed: int | None = None) -> None:
        self.items, self.claimed, self.produced = items, claimed, 0

    def __len__(self) -> int:
        return self.claimed if self.claimed is not None else len(self.items)

    def __iter__(self) -> Iterator[Any]:
        for item in self.items:
            self.produced += 1
            yield item
