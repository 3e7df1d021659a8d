r"""Ranks of a matrix from its singular values: effective, stable, and Kumar et al.'s feature rank.

Each function reads a tensor as a matrix ``W = x.reshape(x.shape[0], -1)`` (a Conv weight as
``(out, in * kernel)``), with singular values :math:`\sigma_1 \ge \sigma_2 \ge \dots`. The
*effective rank* (Roy and Vetterli, 2007) and the *stable rank*:

.. math::

    \operatorname{erank}(W) = \exp\Bigl(-\sum_k p_k \log p_k\Bigr),\ \ p_k = \frac{\sigma_k}{\sum_j \sigma_j};
    \qquad
    \operatorname{srank}(W) = \frac{\lVert W\rVert_F^2}{\lVert W\rVert_2^2} = \frac{\sum_k \sigma_k^2}{\sigma_1^2}.

Both lie in :math:`[1, \min(m, n)]` for a non-zero matrix (:math:`0 \log 0 = 0`); a zero matrix
gets 0.

The *feature rank* (Kumar et al., ICLR 2021) of features :math:`\Phi` (one row per sample, or
per token or position):

.. math::

    \operatorname{srank}_\delta(\Phi)
    = \min\Bigl\{k : \textstyle\sum_{i \le k} \sigma_i \ge (1 - \delta) \sum_i \sigma_i\Bigr\},
    \qquad \delta = 0.01 .

The singular values come from the float64 Gram matrix on the smaller side, one batched
``eigvalsh`` per size. :func:`~torch_dash_optim.diagnostics.diagnose` reports these ranks for
every shrinkable weight and for the penultimate features of a model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ._checks import check_real

__all__ = ["effective_rank", "feature_rank", "stable_rank"]


def _as_matrix(x: Tensor) -> Tensor:
    """A tensor as a matrix ``(shape[0], -1)``, detached; refuse fewer than two dimensions."""
    if x.ndim < 2:
        raise ValueError(f"a rank needs a matrix (or a tensor read as (shape[0], -1)); got shape {tuple(x.shape)}")
    return x.detach().reshape(x.shape[0], -1)


def _singular_values(matrices: Sequence[Tensor]) -> list[Tensor]:
    """Singular values (float64, descending) of each matrix, from the float64 Gram on its smaller side.

    Matrices of one Gram size go through one batched ``eigvalsh``. In float64 the Gram costs
    no accuracy that matters here: a singular value is resolved down to about ``1e-7`` of the
    largest (in float32, a floor near ``1e-2`` of the largest, which the entropy would count).
    This is also the fastest accurate route on a CPU (``svdvals`` takes 2 to 10 times longer).
    A matrix holding inf or NaN gets NaN singular values.
    """
    out: list[Tensor | None] = [None] * len(matrices)
    by_size: dict[tuple[int, torch.device], list[int]] = {}
    grams: list[Tensor] = []
    for m in matrices:
        m64 = m.detach().to(torch.float64)
        grams.append(m64 @ m64.T if m64.shape[0] <= m64.shape[1] else m64.T @ m64)
    finite = torch.stack([g.isfinite().all().cpu() for g in grams]).tolist() if grams else []  # one host sync
    for i, (gram, ok) in enumerate(zip(grams, finite, strict=True)):
        if ok:
            by_size.setdefault((gram.shape[0], gram.device), []).append(i)
        else:
            out[i] = gram.new_full((gram.shape[0],), math.nan)
    for index in by_size.values():
        stacked = torch.stack([grams[i] for i in index])
        values = torch.linalg.eigvalsh(stacked).clamp_min_(0).sqrt_().flip(-1)
        for i, v in zip(index, values, strict=True):
            out[i] = v
    return out  # type: ignore[return-value]


def _erank(sigma: Tensor) -> float:
    """The effective rank of singular values (NaN if they are not finite, 0 if all zero)."""
    total = sigma.sum()
    if not total.isfinite():
        return math.nan
    if total <= 0:
        return 0.0
    p = sigma[sigma > 0] / total
    return float(torch.exp(-(p * p.log()).sum()))


def _srank(sigma: Tensor) -> float:
    """The stable rank of singular values in descending order (NaN if not finite, 0 if all zero)."""
    top = sigma[0] if sigma.numel() else sigma.new_zeros(())
    if not top.isfinite():
        return math.nan
    return float(sigma.square().sum() / top.square()) if top > 0 else 0.0


def _srank_delta(sigma: Tensor, delta: float) -> int | float:
    """Kumar et al.'s srank of singular values in descending order (NaN if not finite, 0 if all zero)."""
    total = sigma.sum()
    if not total.isfinite():
        return math.nan
    if total <= 0:
        return 0
    share = sigma.cumsum(0) / total
    return min(int((share < 1.0 - delta).sum()) + 1, sigma.numel())


def effective_rank(matrix: Tensor) -> float:
    r"""Effective rank (Roy and Vetterli, 2007): :math:`\exp` of the entropy of :math:`\sigma / \sum\sigma`.

    Parameters
    ----------
    matrix:
        A matrix, or a tensor read as ``matrix.reshape(matrix.shape[0], -1)`` (a Conv weight as
        ``(out, in * kernel)``).

    Returns
    -------
    float
        In ``[1, min(m, n)]``; 0 for a zero matrix, NaN for one that holds inf or NaN.

    Examples
    --------
    >>> effective_rank(torch.eye(4))
    4.0
    >>> round(effective_rank(torch.diag(torch.tensor([3.0, 1.0]))), 4)   # exp(-(.75 ln .75 + .25 ln .25))
    1.7548
    """
    return _erank(_singular_values([_as_matrix(matrix)])[0])


def stable_rank(matrix: Tensor) -> float:
    r"""Stable rank :math:`\lVert W\rVert_F^2 / \lVert W\rVert_2^2 = \sum_k \sigma_k^2 / \sigma_1^2`.

    Parameters
    ----------
    matrix:
        A matrix, or a tensor read as ``matrix.reshape(matrix.shape[0], -1)``.

    Returns
    -------
    float
        In ``[1, min(m, n)]``; 0 for a zero matrix, NaN for one that holds inf or NaN.

    Examples
    --------
    >>> stable_rank(torch.diag(torch.tensor([3.0, 1.0])))   # (9 + 1) / 9
    1.1111111111111112
    """
    return _srank(_singular_values([_as_matrix(matrix)])[0])


def feature_rank(features: Tensor, delta: float = 0.01) -> int:
    r"""Kumar et al.'s :math:`\operatorname{srank}_\delta`: the fewest singular values that hold
    :math:`1 - \delta` of their sum.

    Parameters
    ----------
    features:
        One row per sample (or token, or position), one column per feature; a tensor of more
        dimensions is read as ``features.reshape(features.shape[0], -1)``.
    delta:
        The share of the sum of singular values left out, in ``(0, 1)`` (0.01, the paper's).

    Returns
    -------
    int
        At most ``min(rows, columns)``; 0 for zero features.

    Raises
    ------
    ValueError
        If ``delta`` is outside ``(0, 1)`` or the features hold inf or NaN.

    Examples
    --------
    >>> phi = torch.diag(torch.tensor([10.0, 5.0, 1.0, 0.1]))   # sums: 10, 15, 16, 16.1
    >>> feature_rank(phi), feature_rank(phi, delta=0.1)
    (3, 2)
    """
    _check_delta(delta)
    rank = _srank_delta(_singular_values([_as_matrix(features)])[0], delta)
    if isinstance(rank, float):
        raise ValueError("the features hold inf or NaN; their rank is undefined")
    return rank


def _check_delta(delta: Any) -> None:
    """Refuse a ``delta`` outside (0, 1)."""
    value = check_real("delta", delta, "(0, 1)")
    if not 0.0 < value < 1.0:
        raise ValueError(f"delta={delta!r} must be in (0, 1) (Kumar et al. use 0.01)")
