"""The references of the rank tests: matrices with known singular values, the effective rank by hand."""

from __future__ import annotations

import math

import torch


def entropy_rank(sigma: list[float]) -> float:
    """Roy and Vetterli's effective rank, by hand."""
    total = sum(sigma)
    p = [s / total for s in sigma if s > 0]
    return math.exp(-sum(x * math.log(x) for x in p))


def with_singular_values(sigma: list[float], rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    """U diag(sigma) V^T with random orthonormal U (rows x k) and V (cols x k), in float64."""
    gen = torch.Generator().manual_seed(seed)
    k = len(sigma)
    u = torch.linalg.qr(torch.randn(rows, k, generator=gen, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(cols, k, generator=gen, dtype=torch.float64))[0]
    return (u * torch.tensor(sigma, dtype=torch.float64)) @ v.T
