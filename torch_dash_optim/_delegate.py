"""A :class:`torch.optim.Optimizer` that reads its groups and state through to an inner one.

``DASHWrapper`` and ``SAM`` both hold an inner optimizer. They must be true ``Optimizer``
instances (schedulers check ``isinstance``), yet ``param_groups`` and ``state`` must never be
stale aliases: ``load_state_dict`` of the inner optimizer replaces its group list. So they are
properties that read through every time, and the hook registries of ``Optimizer.__init__`` are
set up here without creating any groups of our own.

Step hooks fire as on a bare optimizer, once per step of the wrapper, with the wrapper (the
object the user holds) as their argument: global pre-hooks
(:func:`torch.optim.optimizer.register_optimizer_step_pre_hook`), the wrapper's own pre-hooks,
the step, the wrapper's own post-hooks, global post-hooks. The optimizers inside (the wrapped
one, a SAM's base) still fire the hooks registered on themselves, but not the global ones a
second time: while the wrapper's step runs, torch's global hook tables are swapped for empty
ones (and put back, with any hook registered meanwhile, on exit).
"""

from __future__ import annotations

import contextlib
import functools
from collections import OrderedDict
from collections.abc import Callable, Iterator
from itertools import chain
from typing import Any

from torch.optim import Optimizer
from torch.optim import optimizer as _optimizer_module

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
        # Like Optimizer._patch_step_function: the hooks fire in torch's order, with the wrapper
        # as argument; the optimizers inside do not fire the global hooks a second time.
        self._zero_grad_profile_name = f"Optimizer.zero_grad#{type(self).__name__}.zero_grad"
        cls = type(self)
        if not getattr(cls.step, "hooked", False):
            cls.step = _outer_step(cls.step)  # type: ignore[method-assign]
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


@contextlib.contextmanager
def _global_hooks_silenced() -> Iterator[None]:
    """Swap torch's global step-hook tables for empty ones; put them back, with any hook added meanwhile, on exit."""
    # The wrapper fired the global hooks itself; the inner optimizer's patched step must not fire
    # them again. Not thread-safe, like torch's global tables: another thread's optimizer stepping
    # inside this window would not see the global hooks.
    mod = _optimizer_module
    pre, post = mod._global_optimizer_pre_hooks, mod._global_optimizer_post_hooks
    if not pre and not post:  # the usual case: nothing to hide
        yield
        return
    mod._global_optimizer_pre_hooks, mod._global_optimizer_post_hooks = OrderedDict(), OrderedDict()
    try:
        yield
    finally:
        added_pre, added_post = mod._global_optimizer_pre_hooks, mod._global_optimizer_post_hooks
        mod._global_optimizer_pre_hooks, mod._global_optimizer_post_hooks = pre, post
        pre.update(added_pre)
        post.update(added_post)


def _outer_step(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with the step hooks around it, in the order and with the argument of torch's."""

    # No profiler range of its own: the inner optimizer's patched step records one
    # ("Optimizer.step#Adam.step"), and the wrapper's step stays as cheap as a function call.
    @functools.wraps(func)
    def step(*args: Any, **kwargs: Any) -> Any:
        self = args[0]
        mod = _optimizer_module
        for pre_hook in chain(mod._global_optimizer_pre_hooks.values(), self._optimizer_step_pre_hooks.values()):
            result = pre_hook(self, args, kwargs)
            if result is not None:
                if isinstance(result, tuple) and len(result) == 2:
                    args, kwargs = result
                else:
                    raise RuntimeError(
                        f"{func} must return None or a tuple of (new_args, new_kwargs), but got {result}."
                    )
        if mod._global_optimizer_pre_hooks or mod._global_optimizer_post_hooks:
            with _global_hooks_silenced():
                out = func(*args, **kwargs)
        else:  # the usual case: no global hook to hide, no context manager on the hot path
            out = func(*args, **kwargs)
        for post_hook in chain(self._optimizer_step_post_hooks.values(), mod._global_optimizer_post_hooks.values()):
            post_hook(self, args, kwargs)
        return out

    return step
