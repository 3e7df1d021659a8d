"""The ranks of a matrix against their formulas: by hand, on known singular values, on a Conv weight."""

from __future__ import annotations

import math

import pytest
import torch
from _spectra import entropy_rank, with_singular_values

from torch_dash_optim.ranks import effective_rank, feature_rank, stable_rank


@pytest.mark.parametrize(
    ("diag", "expected"),
    [
        ([3.0, 1.0], entropy_rank([3.0, 1.0])),
        ([1.0, 1.0, 1.0, 1.0], 4.0),
        ([2.0, 2.0, 0.0, 0.0], 2.0),
        ([5.0, 0.0, 0.0], 1.0),
        ([4.0, 2.0, 1.0, 1.0], entropy_rank([4.0, 2.0, 1.0, 1.0])),
    ],
)
def test_effective_rank_of_diagonal_matrices(diag, expected):
    assert effective_rank(torch.diag(torch.tensor(diag))) == pytest.approx(expected, rel=1e-6)


def test_effective_rank_hand_value():
    # p = (3/4, 1/4): H = -(0.75 ln 0.75 + 0.25 ln 0.25) = 0.5623351446..., exp(H) = 1.7547654...
    assert effective_rank(torch.diag(torch.tensor([3.0, 1.0]))) == pytest.approx(1.7547653, rel=1e-6)


def test_stable_rank_of_diagonal_matrices():
    assert stable_rank(torch.diag(torch.tensor([3.0, 1.0]))) == pytest.approx(10 / 9)
    assert stable_rank(torch.diag(torch.tensor([2.0, 2.0, 2.0]))) == pytest.approx(3.0)
    assert stable_rank(torch.diag(torch.tensor([4.0, 2.0, 0.0]))) == pytest.approx(20 / 16)


def test_ranks_of_a_zero_matrix_are_zero_and_of_nan_are_nan():
    assert effective_rank(torch.zeros(3, 4)) == 0.0
    assert stable_rank(torch.zeros(3, 4)) == 0.0
    assert feature_rank(torch.zeros(5, 3)) == 0
    bad = torch.eye(3)
    bad[0, 1] = math.nan
    assert math.isnan(effective_rank(bad)) and math.isnan(stable_rank(bad))
    with pytest.raises(ValueError, match="inf or NaN"):
        feature_rank(bad)


def test_ranks_of_a_rectangular_rank_deficient_matrix_match_its_singular_values():
    """Zero singular values must not leak in: the Gram is taken in float64."""
    sigma = [9.0, 5.0, 3.0, 1.0, 0.5]
    w = with_singular_values(sigma, 200, 300).float()
    assert effective_rank(w) == pytest.approx(entropy_rank(sigma), rel=1e-4)
    assert effective_rank(w.T) == pytest.approx(entropy_rank(sigma), rel=1e-4)
    assert stable_rank(w) == pytest.approx(sum(s * s for s in sigma) / 81.0, rel=1e-5)
    w = torch.randn(30, 50)
    assert stable_rank(w) == pytest.approx(
        float(torch.linalg.matrix_norm(w, "fro") ** 2 / torch.linalg.matrix_norm(w, 2) ** 2), rel=1e-5
    )


def test_a_conv_weight_is_read_as_out_by_in_times_kernel():
    w = torch.zeros(2, 1, 2, 2)
    w[0, 0, 0, 0] = 3.0  # rows orthogonal, norms 3 and 1
    w[1, 0, 1, 1] = 1.0
    assert effective_rank(w) == pytest.approx(entropy_rank([3.0, 1.0]), rel=1e-6)
    assert stable_rank(w) == pytest.approx(10 / 9)


@pytest.mark.parametrize(
    ("delta", "expected"),
    # sigma = 8, 4, 2, 1, 0.5, 0.25: sum 15.75, cumulative 8, 12, 14, 15, 15.5, 15.75;
    # (1 - delta) * 15.75 = 15.5925, 15.435, 14.9625, 14.175, 13.86, 11.025, 7.875
    [(0.01, 6), (0.02, 5), (0.05, 4), (0.1, 4), (0.12, 3), (0.3, 2), (0.5, 1)],
)
def test_feature_rank_of_features_with_known_singular_values(delta, expected):
    phi = with_singular_values([8.0, 4.0, 2.0, 1.0, 0.5, 0.25], 64, 12).float()
    assert feature_rank(phi, delta) == expected
