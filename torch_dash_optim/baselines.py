r"""The warm-starting baselines DASH is compared with, as reusable functions.

* :func:`shrink_perturb_`: Shrink & Perturb (Ash & Adams, NeurIPS 2020),
  :math:`W \leftarrow \lambda W + \mathcal N(0, \sigma^2)` on the weights and biases of every
  Conv/Linear module (λ = 0.3 and σ = 0.01 in the DASH authors' code).
* :func:`l2_init_penalty` and :class:`L2Init`: the L2-init regulariser (Kumar et al., 2023),
  :math:`\mu \lVert\theta - \theta_0\rVert_2^2`, a true sum of squares over all parameters.
* :func:`reset_last_layer_`: re-initialise the last Conv/Linear layer (its
  ``reset_parameters``).
* :func:`fire_`: FIRE, Frobenius-Isometry REinitialization (Han et al., ICLR 2026): every
  Conv/Linear weight is replaced by a scaled near-orthogonal matrix (per spatial position of a
  kernel) computed with Newton-Schulz iterations (:func:`newton_schulz`). It needs no data.

All of them draw random numbers from ``torch``'s global generator unless a
:class:`torch.Generator` is given, so ``torch.manual_seed`` makes them reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from .selection import SHRINKABLE_MODULES

__all__ = [
    "L2Init",
    "fire_",
    "l2_init_penalty",
    "last_layer",
    "newton_schulz",
    "reset_last_layer_",
    "shrink_perturb_",
]


@torch.no_grad()
def shrink_perturb_(
    model: nn.Module,
    shrink: float = 0.3,
    sigma: float = 0.01,
    *,
    generator: torch.Generator | None = None,
) -> int:
    r"""Shrink & Perturb in place: :math:`W \leftarrow \lambda W + \mathcal N(0, \sigma^2)`.

    Applied to the weight and bias of every Conv1d/2d/3d and Linear module (subclasses
    included), as in the DASH authors' code; norm layers and other parameters are left alone.

    Parameters
    ----------
    model:
        The model to change in place.
    shrink:
        :math:`\lambda`, the factor on the weights (default 0.3).
    sigma:
        Standard deviation :math:`\sigma` of the added Gaussian noise (default 0.01; 0 only
        shrinks).
    generator:
        Random generator for the noise (it must live on the parameters' device); the global
        one by default.

    Returns
    -------
    int
        The number of tensors changed.

    Examples
    --------
    >>> layer = torch.nn.Linear(3, 2)
    >>> w = layer.weight.detach().clone()
    >>> shrink_perturb_(layer, shrink=0.5, sigma=0.0)
    2
    >>> torch.equal(layer.weight, 0.5 * w)
    True
    """
    if isinstance(shrink, bool) or not isinstance(shrink, (int, float)):
        raise TypeError(f"shrink must be a number; got {shrink!r}")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma >= 0:
        raise ValueError(f"sigma={sigma!r} must be a number >= 0 (the noise's standard deviation, e.g. 0.01)")
    count = 0
    for module in model.modules():
        if not isinstance(module, SHRINKABLE_MODULES):
            continue
        for p in (module.weight, module.bias):
            if p is None:
                continue
            p.mul_(shrink)
            if sigma > 0:
                p.add_(torch.randn(p.shape, generator=generator, device=p.device, dtype=p.dtype), alpha=sigma)
            count += 1
    return count


def l2_init_penalty(params: Iterable[Tensor], anchors: Iterable[Tensor], strength: float) -> Tensor:
    r"""Return :math:`\mu \sum_i \lVert \theta_i - \theta_{0,i} \rVert_2^2`, a true sum of squares.

    (The DASH authors' code squares the *sum of per-layer norms*, which is not this; this
    function follows Kumar et al.)

    Parameters
    ----------
    params:
        The current parameters :math:`\theta` (gradients flow through them).
    anchors:
        Their initial values :math:`\theta_0`, same order and shapes (treated as constants).
    strength:
        :math:`\mu \ge 0`.

    Returns
    -------
    Tensor
        A scalar.

    Examples
    --------
    >>> w = torch.tensor([1.0, 2.0], requires_grad=True)
    >>> l2_init_penalty([w], [torch.tensor([0.0, 0.0])], strength=0.5)
    tensor(2.5000, grad_fn=<MulBackward0>)
    """
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not strength >= 0:
        raise ValueError(f"strength={strength!r} must be a number >= 0 (e.g. 0.01, the authors' value)")
    params, anchors = list(params), list(anchors)
    if len(params) != len(anchors):
        raise ValueError(
            f"got {len(params)} parameters but {len(anchors)} anchors; give one anchor per parameter"
        )
    if not params:
        return torch.zeros(())
    total = sum(((p - a.detach()) ** 2).sum() for p, a in zip(params, anchors, strict=True))
    return strength * total  # type: ignore[return-value]


class L2Init:
    r"""The L2-init regulariser of a model, anchored at its parameters when created.

    Calling it returns :math:`\mu \lVert\theta - \theta_0\rVert_2^2` over every parameter that
    requires a gradient (see :func:`l2_init_penalty`); add it to the loss.

    Parameters
    ----------
    model:
        The model; its current parameters become :math:`\theta_0` (copied).
    strength:
        :math:`\mu` (default 0.01, the DASH authors' value).

    Examples
    --------
    >>> model = torch.nn.Linear(2, 1)
    >>> reg = L2Init(model, strength=0.01)
    >>> reg().item()
    0.0
    >>> with torch.no_grad():
    ...     _ = model.bias.add_(1.0)
    >>> round(reg().item(), 6)
    0.01
    """

    def __init__(self, model: nn.Module, strength: float = 0.01) -> None:
        l2_init_penalty([], [], strength)  # validates strength
        self.strength = float(strength)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.anchors = [p.detach().clone() for p in self.params]

    def __call__(self) -> Tensor:
        """Return the penalty at the current parameters."""
        return l2_init_penalty(self.params, self.anchors, self.strength)


def last_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """Return the name and module of the last Conv/Linear module of ``model`` (in module order).

    Parameters
    ----------
    model:
        The model to search, in the order of ``torch.nn.Module.named_modules()``.

    Returns
    -------
    tuple of (str, torch.nn.Module)
        The qualified name of the last Conv/Linear module and the module itself.

    Raises
    ------
    ValueError
        If ``model`` has no Conv or Linear module.

    Examples
    --------
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> last_layer(model)[0]
    '2'
    """
    found: tuple[str, nn.Module] | None = None
    for name, module in model.named_modules():
        if isinstance(module, SHRINKABLE_MODULES):
            found = (name, module)
    if found is None:
        raise ValueError(
            f"{type(model).__name__} has no Conv or Linear module, so there is no last layer to reset"
        )
    return found


@torch.no_grad()
def reset_last_layer_(model: nn.Module, names: Sequence[str] | None = None) -> list[str]:
    """Re-initialise the last layer in place with its module's ``reset_parameters()``.

    Parameters
    ----------
    model:
        The model to change in place.
    names:
        Qualified names of the modules to reset (e.g. ``["fc"]``); by default the last
        Conv/Linear module (see :func:`last_layer`).

    Returns
    -------
    list of str
        The names of the modules reset.

    Examples
    --------
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> torch.nn.init.zeros_(model[2].weight)
    Parameter containing: ...
    >>> reset_last_layer_(model)
    ['2']
    >>> bool(model[2].weight.abs().sum() > 0)
    True
    """
    if names is None:
        names = [last_layer(model)[0]]
    modules = dict(model.named_modules())
    for name in names:
        module = modules.get(name)
        if module is None or not hasattr(module, "reset_parameters"):
            raise ValueError(
                f"{name!r} is not a module of {type(model).__name__} with reset_parameters(); "
                f"pass names of its layers, e.g. {last_layer(model)[0]!r}"
            )
        module.reset_parameters()
    return list(names)


def newton_schulz(matrix: Tensor, iterations: int = 10) -> Tensor:
    r"""Return the near-orthogonal factor of a matrix by Newton-Schulz iteration (FIRE's rule).

    The matrix is transposed if it has more columns than rows (so that :math:`X` is tall),
    divided by its Frobenius norm, iterated with
    :math:`X \leftarrow 1.5\,X - 0.5\,X (X^\top X)`, and transposed back. With the
    Frobenius normalisation every singular value starts in :math:`(0, 1]`, and each iteration
    moves it towards 1 (:math:`s \leftarrow 1.5 s - 0.5 s^3`), so the result approaches
    :math:`U V^\top` from the SVD :math:`U S V^\top` (the closest semi-orthogonal matrix);
    singular values that start tiny need more iterations.

    Parameters
    ----------
    matrix:
        A 2-D tensor (not changed).
    iterations:
        Number of Newton-Schulz iterations (FIRE's default: 10).

    Returns
    -------
    Tensor
        A new tensor of the same shape and dtype.

    Raises
    ------
    ValueError
        If ``matrix`` is not 2-D or ``iterations`` is not an integer >= 0.

    Examples
    --------
    >>> q = newton_schulz(torch.tensor([[3.0, 0.0], [0.0, 3.0]]))
    >>> torch.allclose(q, torch.eye(2), atol=1e-6)
    True
    """
    if matrix.ndim != 2:
        raise ValueError(f"newton_schulz needs a 2-D matrix; got shape {tuple(matrix.shape)}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations={iterations!r} must be an integer >= 0 (FIRE uses 10)")
    x = matrix.T if matrix.shape[1] > matrix.shape[0] else matrix
    x = x / x.norm()
    for _ in range(iterations):
        x = 1.5 * x - 0.5 * x @ (x.T @ x)
    return (x.T if matrix.shape[1] > matrix.shape[0] else x).clone()


@torch.no_grad()
def fire_(model: nn.Module, iterations: int = 10) -> list[str]:
    r"""FIRE in place: re-initialise every Conv/Linear weight to a scaled near-orthogonal one.

    FIRE (Frobenius-Isometry REinitialization; Han et al., ICLR 2026, arXiv 2602.08040) acts
    once on a trained model before it trains on new data, and needs no data. For the weight of
    every ``Linear`` and ``Conv1d/2d/3d`` module (subclasses included):

    * a ``Linear`` weight :math:`W` (``d_out x d_in``) becomes
      :math:`\sqrt{d_{out}/d_{in}}\;\mathrm{NS}(W)`;
    * a conv weight (``C_out x C_in x k...``) is orthogonalised per spatial position, each
      slice ``W[:, :, i, j]`` on its own, and scaled by :math:`\sqrt{C_{out}/C_{in}}/K`,
      where :math:`K` is the number of kernel elements (``k_h k_w`` for Conv2d);

    with :math:`\mathrm{NS}` the Newton-Schulz orthogonalisation of :func:`newton_schulz`.
    Biases, norm layers, embeddings and every other parameter are left alone. This follows the
    official implementation (github.com/isaac7778/FIRE), which handles ``Linear`` and
    ``Conv2d``; Conv1d/Conv3d are treated the same way here. The parameters keep their
    identity (the values are copied in), so an optimizer holding them still works; the official
    warm-start scripts build a fresh optimizer (vision) or clear its state (language) at every
    new chunk, and the harness's ``fire`` method starts a fresh optimizer likewise.

    Parameters
    ----------
    model:
        The model to change in place.
    iterations:
        Newton-Schulz iterations per slice (default 10, the official default).

    Returns
    -------
    list of str
        Qualified names of the weights changed, in module order.

    Examples
    --------
    >>> layer = torch.nn.Linear(4, 16, bias=False)   # weight 16 x 4
    >>> fire_(layer)
    ['weight']
    >>> s = torch.linalg.svdvals(layer.weight)        # all near sqrt(16 / 4) = 2
    >>> bool((s - 2).abs().max() < 0.01)
    True
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations={iterations!r} must be an integer >= 0 (FIRE uses 10)")
    changed = []
    for name, module in model.named_modules():
        if not isinstance(module, SHRINKABLE_MODULES):
            continue
        weight = module.weight
        w = weight.detach().float()
        d_out, d_in = w.shape[0], w.shape[1]
        if w.ndim == 2:
            new = newton_schulz(w, iterations)
            elements = 1
        else:
            flat = w.reshape(d_out, d_in, -1)
            new = torch.stack(
                [newton_schulz(flat[:, :, k], iterations) for k in range(flat.shape[2])], dim=2
            ).reshape(w.shape)
            elements = flat.shape[2]
        weight.copy_(new * (math.sqrt(d_out / d_in) / elements))
        changed.append(f"{name}.weight" if name else "weight")
    return changed
