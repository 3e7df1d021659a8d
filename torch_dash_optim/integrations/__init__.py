"""DASH inside training frameworks, each imported on demand with its extra.

* :mod:`torch_dash_optim.integrations.lightning`: a Lightning callback (the ``lightning``
  extra: ``pip install -e ".[lightning]"`` in a clone).
* :mod:`torch_dash_optim.integrations.transformers`: a Hugging Face ``TrainerCallback`` (the
  ``hf`` extra: ``pip install -e ".[hf]"``).

Imported without its package, each raises an :class:`ImportError` that names the extra.

Accelerate, timm and averaged models need no module of their own: see
:func:`torch_dash_optim.on_new_data`, :mod:`torch_dash_optim.state_policy` and
:meth:`torch_dash_optim.DASHReport.apply_to`, and the :doc:`/guide/integrations` guide.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .._extras import install_hint

__all__ = ["require"]


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module``, or raise an ImportError that names the extra to install.

    Parameters
    ----------
    module:
        The module to import, e.g. ``"lightning"``.
    extra:
        The ``torch-dash-optim`` extra that installs it.
    what:
        What needs the module, for the error message.

    Returns
    -------
    types.ModuleType
        The imported module.

    Raises
    ------
    ImportError
        If ``module`` cannot be imported; the message names the extra and how to install it.

    Examples
    --------
    >>> require("math", "none", "the math module").__name__
    'math'
    >>> require("no_such_module_xyz", "lightning", "torch_dash_optim.integrations.lightning")
    Traceback (most recent call last):
    ...
    ImportError: torch_dash_optim.integrations.lightning needs no_such_module_xyz, from the "lightning" extra: ...
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f'{what} needs {module}, from the "{extra}" extra: {install_hint(extra)}') from err
