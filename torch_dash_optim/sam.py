r"""Sharpness-Aware Minimization (Foret et al., ICLR 2021) and ASAM (Kwon et al., ICML 2021)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from ._checks import check_real
from ._delegate import DelegatingOptimizer

__all__ = ["SAM"]


class SAM(DelegatingOptimizer):
    r"""Sharpness-Aware Minimization around any base optimizer.

    Each step first climbs to the worst nearby weights, then takes the base optimizer's step
    there with the gradient found, from the original weights:

    .. math::

        \hat\epsilon &= \rho\, \frac{T^2 g}{\lVert T g \rVert_2},
            \qquad T = \operatorname{diag}(|w|) \text{ if adaptive (ASAM) else } I \\
        w &\leftarrow \operatorname{base\_step}\bigl(w,\ \nabla L(w + \hat\epsilon)\bigr)

    Parameters
    ----------
    params:
        Parameters or param groups, as for any optimizer. Groups may set their own ``rho`` and
        ``adaptive``.
    base_optimizer:
        The base optimizer's class (or any callable ``base_optimizer(params, **base_kwargs)``
        that returns an optimizer), e.g. ``torch.optim.SGD``.
    rho:
        Radius of the neighbourhood (default 0.05; the DASH paper uses 0.1).
    adaptive:
        ASAM: scale the neighbourhood by ``|w|`` (then ``rho`` is typically larger, e.g. 2.0).
    **base_kwargs:
        Passed to the base optimizer (``lr``, ``momentum``, ...).

    Notes
    -----
    The base optimizer owns ``param_groups`` and ``state``; SAM reads them through, so
    ``state_dict`` carries the base's full state (momentum included) and LR schedulers act
    on the base. The perturbation between :meth:`first_step` and :meth:`second_step` is
    transient: ``state_dict()`` is refused in that window, since the weights are perturbed.

    Examples
    --------
    >>> model = torch.nn.Linear(3, 1)
    >>> opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    >>> x, y = torch.randn(8, 3), torch.randn(8, 1)
    >>> def closure():
    ...     opt.zero_grad()
    ...     loss = torch.nn.functional.mse_loss(model(x), y)
    ...     loss.backward()
    ...     return loss
    >>> loss = opt.step(closure)     # both SAM steps; returns the loss at the original weights
    >>> loss.ndim
    0
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: Callable[..., Optimizer],
        rho: float = 0.05,
        adaptive: bool = False,
        **base_kwargs: Any,
    ) -> None:
        rho = _check_rho(rho)
        if not isinstance(adaptive, bool):
            raise TypeError(f"adaptive must be True or False; got {adaptive!r}")
        if isinstance(base_optimizer, Optimizer):
            raise TypeError(
                "base_optimizer must be an optimizer class such as torch.optim.SGD, not an instance; "
                "pass its arguments as keywords: SAM(params, torch.optim.SGD, lr=0.1)"
            )
        self._init_delegate(base_optimizer(params, **base_kwargs))
        self.base_optimizer = self._inner
        self.defaults = {**self._inner.defaults, "rho": float(rho), "adaptive": adaptive}
        for i, group in enumerate(self._inner.param_groups):
            group.setdefault("rho", float(rho))
            group.setdefault("adaptive", adaptive)
            group["rho"] = _check_rho(group["rho"], f"param group {i}: ")
        self._backup: dict[Tensor, Tensor] = {}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group to the base optimizer, with SAM's ``rho``/``adaptive`` defaults.

        Parameters
        ----------
        param_group:
            The group, as for ``torch.optim.Optimizer.add_param_group``: ``params`` plus any
            options; ``rho`` and ``adaptive`` default to the values given to the constructor.

        Raises
        ------
        TypeError
            If the group's ``rho`` is not a real number (``bool`` included).
        ValueError
            If the group's ``rho`` is not finite and >= 0.
        """
        param_group = dict(param_group)
        param_group.setdefault("rho", self.defaults["rho"])
        param_group.setdefault("adaptive", self.defaults["adaptive"])
        param_group["rho"] = _check_rho(param_group["rho"], "param group new: ")
        self._inner.add_param_group(param_group)

    @torch.no_grad()
    def _grad_norm(self) -> Tensor:
        norms = []
        for group in self.param_groups:
            ps = [p for p in group["params"] if p.grad is not None]
            if not ps:
                continue
            grads = [p.grad for p in ps]
            if group["adaptive"]:
                grads = torch._foreach_mul(torch._foreach_abs(ps), grads)
            norms += [n.float() for n in torch._foreach_norm(grads)]
        if not norms:
            return torch.zeros(())
        device = norms[0].device
        return torch.linalg.vector_norm(torch.stack([n.to(device) for n in norms]))

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move the weights to :math:`w + \\hat\\epsilon`, saving :math:`w`.

        Call it after the first backward pass, then compute the loss and gradient again and
        call :meth:`second_step`.

        Parameters
        ----------
        zero_grad:
            Clear the gradients after moving the weights, ready for the second backward pass.

        Raises
        ------
        RuntimeError
            If it is called twice without :meth:`second_step` (or :meth:`undo_first_step`)
            between.
        """
        if self._backup:
            raise RuntimeError("first_step was called twice; call second_step before the next first_step")
        grad_norm = self._grad_norm()
        for group in self.param_groups:
            ps = [p for p in group["params"] if p.grad is not None]
            if not ps:
                continue
            for p in ps:
                self._backup[p] = p.detach().clone()
            scale = group["rho"] / (grad_norm + 1e-12)
            e_w = [g * scale.to(g.device, g.dtype) for g in (p.grad for p in ps)]
            if group["adaptive"]:
                torch._foreach_mul_(e_w, torch._foreach_mul(ps, ps))
            torch._foreach_add_(ps, e_w)
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def undo_first_step(self) -> None:
        """Put back, exactly, the weights saved by :meth:`first_step`, without stepping.

        For a step abandoned half-way (e.g. an inf gradient under a GradScaler). Does nothing
        outside the window between :meth:`first_step` and :meth:`second_step`.
        """
        if self._backup:
            ps = list(self._backup)
            torch._foreach_copy_(ps, [self._backup[p] for p in ps])
            self._backup.clear()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore the saved weights exactly and take the base optimizer's step.

        Parameters
        ----------
        zero_grad:
            Clear the gradients after the base optimizer's step.

        Raises
        ------
        RuntimeError
            If :meth:`first_step` was not called before.
        """
        if not self._backup:
            raise RuntimeError("second_step was called without first_step")
        self.undo_first_step()
        self._inner.step()
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Take a full SAM step and return the loss at the original weights.

        Parameters
        ----------
        closure:
            Clears the gradients, computes the loss, calls ``backward()`` and returns the loss;
            it is called twice. Without a closure this is a plain base-optimizer step (as
            distributed checkpointing expects), not a SAM step.

        Returns
        -------
        Any
            The loss returned by the first closure call, at the original weights; without a
            closure, whatever the base optimizer's ``step()`` returns (usually ``None``).

        Raises
        ------
        RuntimeError
            If it is called without a closure between :meth:`first_step` and
            :meth:`second_step`.

        Notes
        -----
        Exception-safe: if the second closure call raises (or is interrupted), the weights are
        put back exactly as they were before the step, and the exception propagates; the next
        step starts afresh.
        """
        if closure is None:
            if self._backup:
                raise RuntimeError("step() without a closure between first_step and second_step")
            return self._inner.step()
        with torch.enable_grad():
            loss = closure()
        self.first_step(zero_grad=True)
        try:
            with torch.enable_grad():
                closure()
        except BaseException:
            self.undo_first_step()
            raise
        self.second_step()
        return loss

    def _state_dict_body(self) -> dict[str, Any]:
        if self._backup:
            raise RuntimeError(
                "SAM.state_dict() was called between first_step and second_step, while the weights "
                "are perturbed; save after second_step"
            )
        return self._inner.state_dict()

    def in_perturbed_window(self) -> bool:
        """Whether the weights are perturbed (between :meth:`first_step` and :meth:`second_step`).

        Returns
        -------
        bool
            ``True`` after :meth:`first_step` and before :meth:`second_step` or
            :meth:`undo_first_step`, ``False`` otherwise.

        Examples
        --------
        >>> SAM([torch.nn.Parameter(torch.ones(2))], torch.optim.SGD, lr=0.1).in_perturbed_window()
        False
        """
        return bool(self._backup)

    def __repr__(self) -> str:
        return f"SAM(rho={self.defaults['rho']}, adaptive={self.defaults['adaptive']},\n{self._inner!r})"


def _check_rho(rho: Any, where: str = "") -> float:
    """Return ``rho`` as a float if it is a finite number >= 0, or raise naming ``where``."""
    value = check_real(f"{where}rho", rho, "[0, inf)")
    if not 0.0 <= value < math.inf:
        raise ValueError(f"{where}rho={rho!r} must be a finite number >= 0 (e.g. 0.05 for SAM, 2.0 for ASAM)")
    return value
