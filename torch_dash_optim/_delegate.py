"""A :class:`torch.optim.Optimizer` that reads its groups and state through to an inner one.

``DASHWrapper`` and ``SAM`` both hold an inner optimizer. They must be true ``Optimizer``
instances (schedulers check ``isinstance``), yet ``param_groups`` and ``state`` must never be
stale aliases: ``load_state_dict`` of the inner optimizer replaces its group list. So they are
properties that read through every time, and the hook registries of ``Optimizer.__init__`` are
set up here without creating any groups of our own.

Step hooks: hooks registered on the wrapper itself (``register_step_pre_hook``) fire around
its ``step``. Global hooks (:func:`torch.optim.optimizer.register_optimizer_step_pre_hook`)
fire once per step, for the innermost optimizer that really updates the parameters, not a
second time for each wrapper around it.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from torch.optim import Optimizer

_HOOK_REGISTRIES = (
    "_optimizer_step_pre_hooks",
    "_optimizer_step_post_hooks",
    "_optimizer_state_dict_pre_hooks",
    "_optimizer_state_dict_post_hooks",
    "_optimizer_load_state_dict_pre_hooks",
    "_optimizer_load_state_dict_post_hooks",
)

# Instance attributes an LR scheduler patches onto an optimizer; a bare Optimizer drops them
# when pickled, and so do we (the patched ``step`` is a closure that cannot be pickled).
_TRANSIENT = ("step", "_opt_called")


class DelegatingOptimizer(Optimizer):
    """Base for optimizers that wrap another one (not public)."""

    def _init_delegate(self, inner: Optimizer) -> None:
        if not isinstance(inner, Optimizer):
            raise TypeError(
                f"expected a torch.optim.Optimizer instance; got {type(inner).__name__}. "
                "Build the optimizer first, e.g. torch.optim.SGD(model.parameters(), lr=0.1)"
            )
        self.__dict__["_inner"] = inner
        for name in _HOOK_REGISTRIES:
            setattr(self, name, OrderedDict())
        self._patch_step_function()

    def _patch_step_function(self) -> None:
        # Like Optimizer._patch_step_function, but the wrapper's step runs only the hooks
        # registered on the wrapper: the global hooks fire for the inner optimizer's step.
        self._zero_grad_profile_name = f"Optimizer.zero_grad#{type(self).__name__}.zero_grad"
        cls = type(self)
        if not getattr(cls.step, "hooked", False):
            cls.step = _instance_hooks_only(cls.step)  # type: ignore[method-assign]
            cls.step.hooked = True  # type: ignore[attr-defined]

    # -- read-through views --------------------------------------------------------------
    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self._inner.param_groups

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        self._inner.param_groups = value

    @property
    def state(self) -> Any:  # type: ignore[override]
        return self._inner.state

    @state.setter
    def state(self, value: Any) -> None:
        self._inner.state = value

    # -- delegation ----------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients, as the inner optimizer does."""
        self._inner.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group to the inner optimizer."""
        self._inner.add_param_group(param_group)

    def _state_dict_body(self) -> dict[str, Any]:
        return self._inner.state_dict()

    def _load_state_dict_body(self, state_dict: dict[str, Any]) -> None:
        self._inner.load_state_dict(state_dict)

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        for hook in self._optimizer_state_dict_pre_hooks.values():
            hook(self)
        state_dict = self._state_dict_body()
        for hook in self._optimizer_state_dict_post_hooks.values():
            result = hook(self, state_dict)
            if result is not None:
                state_dict = result
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        state_dict = dict(state_dict)
        for hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = hook(self, state_dict)
            if result is not None:
                state_dict = result
        self._load_state_dict_body(state_dict)
        for hook in self._optimizer_load_state_dict_post_hooks.values():
            hook(self)

    # -- pickle / deepcopy: keep the inner optimizer (Optimizer.__getstate__ drops it) ----
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in _TRANSIENT}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for name in _HOOK_REGISTRIES:
            self.__dict__.setdefault(name, OrderedDict())
        self._patch_step_function()

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails. Public names pass through to the inner
        # optimizer (SAM's first_step/second_step); private ones never do, so flags such as
        # ``_step_supports_amp_scaling`` of a fused base are not half-forwarded to GradScaler.
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        inner = self.__dict__.get("_inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)


def _instance_hooks_only(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def step(*args: Any, **kwargs: Any) -> Any:
        self = args[0]
        for pre_hook in self._optimizer_step_pre_hooks.values():
            result = pre_hook(self, args, kwargs)
            if result is not None:
                if isinstance(result, tuple) and len(result) == 2:
                    args, kwargs = result
                else:
                    raise RuntimeError(
                        f"{func} must return None or a tuple of (new_args, new_kwargs), but got {result}."
                    )
        out = func(*args, **kwargs)
        for post_hook in self._optimizer_step_post_hooks.values():
            post_hook(self, args, kwargs)
        return out

    return step
