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
  kernel) computed with Newton-Schulz iterations (:func:`newton_schulz`), or mixed with it
  (``alpha``). It needs no data.

All of them draw random numbers from ``torch``'s global generator unless a
:class:`torch.Generator` is given, so ``torch.manual_seed`` makes them reproducible.

They act on ``Conv1d/2d/3d`` and ``Linear`` modules (subclasses included), as their authors'
code does; the other layers that :class:`~torch_dash_optim.DASHWrapper` shrinks through its unit
rules (``ConvTranspose*``, transformers' ``Conv1D``, ``nn.MultiheadAttention``'s ``in_proj``)
are left alone by them. Compare against DASH on models built from Conv/Linear layers, or apply
the baseline to those layers yourself.

**Parametrized layers.** Under :mod:`torch.nn.utils.parametrize` (and the older hook-based
``torch.nn.utils.weight_norm``/``spectral_norm``) a layer's ``weight`` is not a parameter but a
value recomputed from other tensors on every access, so writing into it changes nothing. The
functions that change weights act where the weight is stored, or refuse before changing
anything (a refusal is checked for every layer before any layer changes):

.. list-table::
   :header-rows: 1

   * - the weight
     - ``shrink_perturb_``, ``fire_``
     - ``reset_last_layer_``
   * - a plain parameter
     - changed in place
     - ``reset_parameters()``
   * - ``weight_norm`` (either API)
     - the new weight is written into :math:`g` and :math:`v` (below)
     - re-initialised, then split into :math:`g` and :math:`v` as ``weight_norm`` does when
       registered
   * - ``parametrizations.spectral_norm``
     - refused: it divides by the largest singular value, so it undoes a shrink and FIRE's scale
     - the original re-initialised, the power iteration started afresh, as when registered
   * - ``parametrizations.orthogonal``
     - refused: every singular value stays 1
     - re-initialised, then orthogonalised as when registered
   * - the hook-based ``spectral_norm``; other parametrizations
     - refused
     - refused

With weight normalisation, :math:`W = g\,v/\lVert v\rVert` (norms per output unit by
default). Scaling :math:`W` by :math:`\lambda` is scaling :math:`g`, which is what
``shrink_perturb_(..., sigma=0)`` does, leaving :math:`v` alone. Any other new weight
:math:`W'` (the noise of Shrink & Perturb, FIRE's) is written as
:math:`g' = s\lVert W'\rVert`, :math:`v' = s\,W'\,\lVert v\rVert / \lVert W'\rVert` with
:math:`s` the sign of :math:`g`: the layer computes exactly :math:`W'`, and :math:`v` keeps its
norm (its effective learning rate) and its orientation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrizations, parametrize
from torch.nn.utils.spectral_norm import SpectralNorm as _SpectralNormHook
from torch.nn.utils.weight_norm import WeightNorm as _WeightNormHook

from .units import SHRINKABLE_MODULES

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
    included), as in the DASH authors' code, each tensor once (a weight that two layers share is
    shrunk once); norm layers and other parameters are left alone. A weight-normalised weight
    is changed through :math:`g` and :math:`v` (with ``sigma=0`` only :math:`g` is scaled); a
    layer whose weight is computed in a way a shrink cannot reach (``spectral_norm``,
    ``orthogonal``, another parametrization) is refused before anything changes (see the
    module's description).

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
        The number of tensors changed (a weight-normalised weight counts once).

    Raises
    ------
    ValueError
        If a Conv/Linear weight or bias is computed by a parametrization that a shrink cannot
        reach; nothing is changed.

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
    places = _unique(
        _place(module, name, kind, "shrink_perturb_")
        for name, module in model.named_modules()
        if isinstance(module, SHRINKABLE_MODULES)
        for kind in ("weight", "bias")
    )
    count = 0
    for place in places:
        if place.param is not None:
            p = place.param
            p.mul_(shrink)
            if sigma > 0:
                p.add_(torch.randn(p.shape, generator=generator, device=p.device, dtype=p.dtype), alpha=sigma)
        elif place.g is not None and place.v is not None:
            if sigma > 0:
                w = place.value()
                noise = torch.randn(w.shape, generator=generator, device=w.device, dtype=w.dtype)
                place.write(w * shrink + noise * sigma)
            else:
                place.g.mul_(shrink)  # W = g v / |v|: scaling W is scaling g
        else:
            continue  # no such tensor (bias=False)
        count += 1
    return count


# -- where a layer's weight is stored -------------------------------------------------------------

_WEIGHT_NORM: type | tuple[()] = getattr(parametrizations, "_WeightNorm", ())
_SPECTRAL_NORM: type | tuple[()] = getattr(parametrizations, "_SpectralNorm", ())
_ORTHOGONAL: type | tuple[()] = getattr(parametrizations, "_Orthogonal", ())


@dataclass
class _Place:
    """Where ``module.<name>`` is stored: a parameter, the ``g`` and ``v`` of weight normalisation, or nowhere."""

    param: Tensor | None = None
    g: Tensor | None = None
    v: Tensor | None = None
    dim: int = 0

    def value(self) -> Tensor:
        """The weight the layer computes (read from where it is stored, running no parametrization)."""
        if self.param is not None:
            return self.param.detach()
        return torch._weight_norm(self.v, self.g, self.dim).detach()

    def write(self, new: Tensor) -> None:
        """Make the layer compute ``new``; weight normalisation keeps ``v``'s norm and the sign of ``g``."""
        if self.param is not None:
            self.param.copy_(new)
            return
        g, v = self.g, self.v
        assert g is not None and v is not None
        new = new.to(v.dtype)
        sign = torch.where(g < 0, -1.0, 1.0).to(g.dtype)
        norm = torch.norm_except_dim(new, 2, self.dim)
        nonzero = norm > 0
        ratio = torch.norm_except_dim(v, 2, self.dim) / torch.where(nonzero, norm, torch.ones_like(norm))
        v.copy_(torch.where(nonzero, new * (sign * ratio), v))
        g.copy_(sign * norm)


def _unique(places: Iterable[_Place]) -> list[_Place]:
    """The places that hold a tensor, each tensor once (a weight shared by two layers is changed once)."""
    seen: set[int] = set()
    out = []
    for place in places:
        key = place.param if place.param is not None else place.g
        if key is not None and id(key) not in seen:
            seen.add(id(key))
            out.append(place)
    return out


def _cannot_reach(method: str, where: str, how: str) -> str:
    return (
        f"{method} cannot change {where}: it is not a parameter but recomputed on every access by {how}. "
        "Remove that first (torch.nn.utils.parametrize.remove_parametrizations(module, name), or "
        "torch.nn.utils.remove_spectral_norm for the hook-based one) to act on a plain weight, or leave this "
        "method out for this model"
    )


def _described(chain: Sequence[nn.Module]) -> str:
    """What a parametrization does that a new weight cannot get through."""
    if len(chain) == 1 and isinstance(chain[0], _SPECTRAL_NORM):
        return (
            "torch.nn.utils.parametrizations.spectral_norm, which divides it by its largest singular value "
            "and so undoes a shrink or a rescaling"
        )
    if len(chain) == 1 and isinstance(chain[0], _ORTHOGONAL):
        return "torch.nn.utils.parametrizations.orthogonal, which keeps every singular value at 1"
    names = " -> ".join(type(m).__name__ for m in chain)
    return f"the parametrization {names} (torch.nn.utils.parametrize), whose originals it cannot map a new value onto"


def _place(module: nn.Module, prefix: str, name: str, method: str) -> _Place:
    """Where ``module.<name>`` is stored; refuse (before anything changes) what ``method`` cannot reach."""
    where = f"{prefix}.{name}" if prefix else name
    if parametrize.is_parametrized(module, name):
        originals = module.parametrizations[name]  # type: ignore[index]
        chain = list(originals)
        if len(chain) == 1 and isinstance(chain[0], _WEIGHT_NORM):
            return _Place(g=originals.original0, v=originals.original1, dim=chain[0].dim)
        raise ValueError(_cannot_reach(method, where, _described(chain)))
    if name in module._parameters:
        return _Place(param=module._parameters[name])  # None for bias=False
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, _WeightNormHook) and hook.name == name:
            return _Place(g=getattr(module, f"{name}_g"), v=getattr(module, f"{name}_v"), dim=hook.dim)
        if isinstance(hook, _SpectralNormHook) and hook.name == name:
            how = (
                "the forward pre-hook of torch.nn.utils.spectral_norm, which divides it by its largest "
                "singular value"
            )
            raise ValueError(_cannot_reach(method, where, how))
    if isinstance(getattr(module, name, None), Tensor):
        raise ValueError(_cannot_reach(method, where, f"{type(module).__name__} (a hook or a property)"))
    return _Place()


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

    A parametrized weight is re-initialised as well: the module's ``reset_parameters()`` draws
    the new weight, which is then handed to the parametrization as when it was registered
    (``weight_norm`` splits it into ``g`` and ``v``, ``orthogonal`` orthogonalises it,
    ``spectral_norm`` takes it as its original and runs its power iteration afresh). With the
    same seed, the layer is then exactly a freshly built one. Other parametrizations, and the
    hook-based ``torch.nn.utils.spectral_norm``, are refused before anything changes.

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

    Raises
    ------
    ValueError
        If a name is not a module with ``reset_parameters()``, or one of its tensors is computed
        by a parametrization that cannot be re-initialised (nothing is changed).

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
    plans = []
    for name in names:
        module = modules.get(name)
        if module is None or not hasattr(module, "reset_parameters"):
            raise ValueError(
                f"{name!r} is not a module of {type(model).__name__} with reset_parameters(); "
                f"pass names of its layers, e.g. {last_layer(model)[0]!r}"
            )
        plans.append((module, _reset_plan(module, name)))
    for module, plan in plans:  # every module checked: now change them
        fresh = _reinitialised(module, list(plan))
        for attr, write in plan.items():
            write(fresh[attr])
    return list(names)


def _reinitialised(module: nn.Module, attrs: Sequence[str]) -> dict[str, Tensor]:
    """Run ``module.reset_parameters()`` and return the new values of its computed tensors ``attrs``."""
    with parametrize.cached():
        # Under the cache, every access to a parametrized tensor returns one tensor, which
        # reset_parameters() then fills. It is made a fresh contiguous tensor first: a random fill
        # follows the memory order, and a parametrization's output may be a transpose
        # (orthogonal's), which would place the same draws elsewhere than in a freshly built layer.
        cache = getattr(parametrize, "_cache", None)
        for attr in attrs:
            if isinstance(cache, dict) and parametrize.is_parametrized(module, attr):
                value = getattr(module, attr)
                cache[(id(module), attr)] = torch.empty(value.shape, dtype=value.dtype, device=value.device)
        module.reset_parameters()  # type: ignore[operator]
        return {attr: getattr(module, attr).detach().clone() for attr in attrs}


def _reset_plan(module: nn.Module, prefix: str) -> dict[str, Callable[[Tensor], None]]:
    """For each computed tensor of ``module``: how to hand it a re-initialised value, as when it was registered."""
    plan: dict[str, Callable[[Tensor], None]] = {}
    attrs = list(module.parametrizations) if parametrize.is_parametrized(module) else []  # type: ignore[arg-type]
    attrs += [
        h.name for h in module._forward_pre_hooks.values() if isinstance(h, (_WeightNormHook, _SpectralNormHook))
    ]
    for attr in attrs:
        chain = list(module.parametrizations[attr]) if parametrize.is_parametrized(module, attr) else []  # type: ignore[index]
        if len(chain) == 1 and isinstance(chain[0], _SPECTRAL_NORM):
            plan[attr] = _spectral_norm_writer(module, attr, chain[0])
        elif len(chain) == 1 and isinstance(chain[0], _ORTHOGONAL) and _assignable(chain[0]):
            plan[attr] = lambda value, attr=attr: setattr(module, attr, value)  # its right_inverse
        else:
            place = _place(module, prefix, attr, "reset_last_layer_")  # weight norm, or refused
            plan[attr] = lambda value, place=place: _weight_norm_registered(place, value)
    return plan


def _assignable(orthogonal: nn.Module) -> bool:
    """Whether an ``orthogonal`` parametrization takes a new matrix (not cayley/matrix_exp without trivialization)."""
    mapping = getattr(getattr(orthogonal, "orthogonal_map", None), "name", "")
    return hasattr(orthogonal, "base") or mapping == "householder"


def _weight_norm_registered(place: _Place, value: Tensor) -> None:
    """``g`` and ``v`` as ``weight_norm`` sets them when registered on a layer of weight ``value``."""
    assert place.g is not None and place.v is not None
    place.g.copy_(torch.norm_except_dim(value, 2, place.dim))
    place.v.copy_(value)


def _spectral_norm_writer(module: nn.Module, attr: str, norm: nn.Module) -> Callable[[Tensor], None]:
    """Set the original to ``value`` and start the power iteration afresh, as ``spectral_norm`` does when registered."""

    def write(value: Tensor) -> None:
        module.parametrizations[attr].original.copy_(value)  # type: ignore[index, union-attr]
        if value.ndim > 1:
            matrix = norm._reshape_weight_to_matrix(value)  # type: ignore[operator]
            for key in ("_u", "_v"):
                buffer = getattr(norm, key)
                buffer.copy_(nn.functional.normalize(buffer.new_empty(buffer.shape).normal_(0, 1), dim=0, eps=norm.eps))
            # 15 steps when built, then those of the forward that register_parametrization checks
            norm._power_method(matrix, 15)  # type: ignore[operator]
            norm._power_method(matrix, norm.n_power_iterations)  # type: ignore[operator]

    return write


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
def fire_(model: nn.Module, iterations: int = 10, *, alpha: float = 1.0) -> list[str]:
    r"""FIRE in place: re-initialise every Conv/Linear weight to a scaled near-orthogonal one.

    FIRE (Frobenius-Isometry REinitialization; Han et al., ICLR 2026, arXiv 2602.08040) acts
    once on a trained model before it trains on new data, and needs no data. For the weight
    :math:`W` of every ``Linear`` and ``Conv1d/2d/3d`` module (subclasses included) it computes

    * for a ``Linear`` weight (``d_out x d_in``):
      :math:`O = \sqrt{d_{out}/d_{in}}\;\mathrm{NS}(W)`;
    * for a conv weight (``C_out x C_in x k...``), per spatial position, each slice
      ``W[:, :, i, j]`` on its own: :math:`O_{ij} = \sqrt{C_{out}/C_{in}}\,\mathrm{NS}(W_{ij})/K`,
      where :math:`K` is the number of kernel elements (``k_h k_w`` for Conv2d);

    with :math:`\mathrm{NS}` the Newton-Schulz orthogonalisation of :func:`newton_schulz`, and
    sets

    .. math::

        W \leftarrow \alpha\, O + (1 - \alpha)\, W .

    With :math:`\alpha = 1` (the default) the weight is replaced by :math:`O`: this is FIRE as
    published (the ``fire(model, iteration)`` of the official repository and of its README). The
    mixing weight :math:`\alpha` comes from the first release of the official vision code
    (``fire(model, alpha, iteration, is_vit=False)``, github.com/isaac7778/FIRE, commit
    7d6e191, February 2026), which set ``alpha * ortho + (1 - alpha) * weight`` exactly so, took
    ``alpha`` without a default, and was replaced the next day by the version without it; a
    tuning of FIRE can search :math:`\alpha` in :math:`[0, 1]`.

    Biases, norm layers, embeddings and every other parameter are left alone. This follows the
    official implementation, which handles ``Linear`` and ``Conv2d``; Conv1d/Conv3d are treated
    the same way here. The parameters keep their identity (the values are copied in), so an
    optimizer holding them still works; the official warm-start scripts build a fresh optimizer
    (vision) or clear its state (language) at every new chunk, and the harness's ``fire`` method
    starts a fresh optimizer likewise. A weight-normalised weight is written through its
    :math:`g` and :math:`v`; a weight that FIRE cannot reach (``spectral_norm``, ``orthogonal``,
    another parametrization) is refused before anything changes (see the module's description).

    Parameters
    ----------
    model:
        The model to change in place.
    iterations:
        Newton-Schulz iterations per slice (default 10, the official default).
    alpha:
        :math:`\alpha \in [0, 1]`, the weight of FIRE's matrix :math:`O` against the current
        weight (default 1: the weight is replaced, as published; 0 leaves it as it is).

    Returns
    -------
    list of str
        Qualified names of the weights changed, in module order (a weight that several layers
        share is changed once, under its first layer's name).

    Raises
    ------
    ValueError
        If ``iterations`` or ``alpha`` is out of range, or a weight is computed by a
        parametrization FIRE cannot reach (nothing is changed).

    Examples
    --------
    >>> layer = torch.nn.Linear(4, 16, bias=False)   # weight 16 x 4
    >>> fire_(layer)
    ['weight']
    >>> s = torch.linalg.svdvals(layer.weight)        # all near sqrt(16 / 4) = 2
    >>> bool((s - 2).abs().max() < 0.01)
    True

    Half-way between the weight and FIRE's matrix:

    >>> layer = torch.nn.Linear(4, 4, bias=False)
    >>> w = layer.weight.detach().clone()
    >>> o = newton_schulz(w)                          # sqrt(4 / 4) = 1: O is NS(W)
    >>> _ = fire_(layer, alpha=0.5)
    >>> torch.allclose(layer.weight, 0.5 * o + 0.5 * w)
    True
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations={iterations!r} must be an integer >= 0 (FIRE uses 10)")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(
            f"alpha={alpha!r} must be a number in [0, 1]: the weight of FIRE's orthogonalised matrix against "
            "the current weight (1, the default, replaces the weight as published; 0 leaves it)"
        )
    named = [
        (name, _place(module, name, "weight", "fire_"))
        for name, module in model.named_modules()
        if isinstance(module, SHRINKABLE_MODULES)
    ]
    kept = {id(place) for place in _unique(place for _, place in named)}
    changed = []
    for name, place in named:
        if id(place) not in kept:
            continue  # no weight, or one shared with an earlier layer (changed once)
        w = place.value().float()
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
        new = new * (math.sqrt(d_out / d_in) / elements)
        if alpha != 1:
            new = alpha * new + (1 - alpha) * w
        place.write(new)
        changed.append(f"{name}.weight" if name else "weight")
    return changed
