"""DASH inside training frameworks, each imported on demand with its extra.

* :mod:`torch_dash_optim.integrations.lightning`: a Lightning callback
  (``pip install "torch-dash-optim[lightning]"``).
* :mod:`torch_dash_optim.integrations.transformers`: a Hugging Face ``TrainerCallback``
  (``pip install "torch-dash-optim[hf]"``).

Accelerate, timm and averaged models need no module of their own: see
:func:`torch_dash_optim.on_new_data`, :mod:`torch_dash_optim.state_policy` and
:meth:`torch_dash_optim.DASHReport.apply_to`, and the :doc:`/guide/integrations` guide.
"""

from __future__ import annotations

import importlib
from types import ModuleType

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
        If ``module`` cannot be imported; the message names ``pip install
        "torch-dash-optim[extra]"``.

    Examples
    --------
    >>> require("math", "none", "the math module").__name__
    'math'
    >>> require("no_such_module_xyz", "lightning", "torch_dash_optim.integrations.lightning")
    Traceback (most recent call last):
    ...
    ImportError: torch_dash_optim.integrations.lightning needs no_such_module_xyz: pip install ...
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f'{what} needs {module}: pip install "torch-dash-optim[{extra}]"') from err
