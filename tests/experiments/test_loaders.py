"""Balanced training batches (no epoch ends in a tiny BatchNorm batch), both loader paths, and ``split_batch``."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from torch_dash_optim.experiments import ProtocolConfig, run_protocol
from torch_dash_optim.experiments.loaders import batch_sizes, make_loader


@pytest.mark.parametrize(
    ("n", "sizes"),
    [
        (1800, [120] * 15),  # 14 x 128 + 8: the 8-example batch of the issue is gone
        (1792, [128] * 14),  # whole batches stay whole
        (129, [65, 64]),  # one example over: two batches of about half
        (128, [128]),
        (100, [100]),  # at most one batch: the whole set
        (1, [1]),
        (0, []),
        (10, [4, 3, 3]),  # B = 128 for all but this row (B = 4)
    ],
)
def test_batch_sizes_of_the_balanced_rule(n: int, sizes: list[int]) -> None:
    assert batch_sizes(n, 4 if n == 10 else 128) == sizes


def test_every_epoch_of_every_size_has_batches_between_half_and_one_batch() -> None:
    for batch in (2, 7, 16, 128):
        for n in range(1, 4 * batch + 3):
            sizes = batch_sizes(n, batch)
            assert sum(sizes) == n and len(sizes) == -(-n // batch)  # every example; a plain loader's steps
            assert max(sizes) <= batch and max(sizes) - min(sizes) <= 1
            if n >= batch:
                assert min(sizes) >= batch // 2, (n, batch, sizes)
            plain = batch_sizes(n, batch, balanced=False)
            assert plain == [len(b) for b in torch.arange(n).split(batch)]  # what a DataLoader gives


class _Items(Dataset):
    """A dataset that is not tensor-backed (so it goes through a DataLoader)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, as_dict: bool = False) -> None:
        self.x, self.y, self.as_dict = x, y, as_dict

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return {"pixels": self.x[i], "label": self.y[i]} if self.as_dict else (self.x[i], self.y[i])


def test_both_loader_paths_give_the_same_balanced_batches() -> None:
    x, y = torch.randn(33, 3), torch.arange(33)
    epochs = []
    for data in (TensorDataset(x, y), _Items(x, y)):
        loader = make_loader(data, 16, shuffle=True, generator=torch.Generator().manual_seed(5), balanced=True)
        epochs.append([[b[1].tolist() for b in loader] for _ in range(2)])
    assert epochs[0] == epochs[1]
    for epoch in epochs[0]:
        assert [len(b) for b in epoch] == [11, 11, 11]  # not 16, 16, 1
        assert sorted(i for b in epoch for i in b) == list(range(33))  # every example, once
    assert epochs[0][0] != epochs[0][1]  # reshuffled every epoch


def test_split_batch_turns_dict_batches_into_pairs_on_both_paths() -> None:
    x, y = torch.randn(10, 3), torch.arange(10)
    loader = make_loader(_Items(x, y, as_dict=True), 4, split_batch=lambda b: (b["pixels"], b["label"]))
    batches = list(loader)
    assert [tuple(map(type, b)) for b in batches] == [(torch.Tensor, torch.Tensor)] * 3
    assert torch.equal(torch.cat([b[0] for b in batches]), x)
    swapped = list(make_loader(TensorDataset(x, y), 4, split_batch=lambda b: (b[0] * 2, b[1])))
    assert torch.equal(torch.cat([b[0] for b in swapped]), 2 * x)


class _Sizes(nn.Module):
    """A small classifier that records the size of every batch it trains on."""

    seen: list[int] = []

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            _Sizes.seen.append(x.shape[0])
        return self.net(x)


def test_the_protocol_trains_on_balanced_batches_and_counts_their_steps() -> None:
    """33-example chunks at B = 16: a plain loader ends experiment 1's epochs in a batch of one example."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(130, 4, generator=g)
    y = (x[:, 0] > 0).long()
    config = ProtocolConfig(num_chunks=3, lr=0.05, batch_size=16, max_epochs=3, threshold=1.0)
    _Sizes.seen = []
    records = run_protocol(TensorDataset(x[:100], y[:100]), TensorDataset(x[100:], y[100:]), _Sizes,
                           config=config, methods=["warm"], progress=False, diagnostics=False)
    expected = []
    for r in records:
        assert r["steps"] == r["epochs"] * -(-r["num_train"] // 16)
        expected += batch_sizes(r["num_train"], 16) * r["epochs"]
    seen = _Sizes.seen[-len(expected):]  # the check before the run trains one batch too
    assert seen == expected and min(seen) >= 8
    assert 1 in batch_sizes(33, 16, balanced=False)  # what the rule avoids
