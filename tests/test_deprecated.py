"""The package's surface: ``__all__``, submodules imported on first use, and the old paths.

Every import path of version 0.2.0 that moved keeps working until version 0.4.0, with a
``DeprecationWarning`` that names the new path and points at the caller's line.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import warnings

import pytest

import torch_dash_optim

#: (old module, old name, new dotted path)
MOVED = [
    ("torch_dash_optim", "gather_direction", "torch_dash_optim.gather.gather_direction"),
    ("torch_dash_optim", "sam_amp_step", "torch_dash_optim.amp.sam_amp_step"),
    ("torch_dash_optim.chain", "find_dash", "torch_dash_optim.find_dash"),
    ("torch_dash_optim.chain", "on_new_data", "torch_dash_optim.on_new_data"),
    ("torch_dash_optim.skip", "check_tol", "torch_dash_optim.tolerance.check_tol"),
    ("torch_dash_optim.skip", "kept_batches", "torch_dash_optim.tolerance.kept_batches"),
    ("torch_dash_optim.skip", "skippable", "torch_dash_optim.tolerance.skippable"),
    ("torch_dash_optim.skip", "trim_loader", "torch_dash_optim.tolerance.trim_loader"),
    ("torch_dash_optim.distributed", "dash_factors", "torch_dash_optim.distributed.sharded_dash_factors"),
]

#: Submodules that ``import torch_dash_optim`` must not import: they load when first used.
NOT_LOADED = [
    "torch_dash_optim.amp",
    "torch_dash_optim.baselines",
    "torch_dash_optim.experiments",
    "torch_dash_optim.integrations",
    "torch_dash_optim.chain",
    "torch_dash_optim.skip",
]


def _new(path: str) -> object:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _message(module: str, name: str, new: str) -> str:
    return rf"^{module}\.{name} is deprecated and will be removed in version 0\.4\.0; use {new} instead$"


@pytest.mark.parametrize(("module", "name", "new"), MOVED, ids=[f"{m}.{n}" for m, n, _ in MOVED])
def test_an_old_path_gives_the_same_object_and_warns_naming_the_new_one(module: str, name: str, new: str) -> None:
    with pytest.warns(DeprecationWarning, match=_message(module, name, new)) as record:
        old = getattr(importlib.import_module(module), name)
    assert old is _new(new)
    assert [w.filename for w in record] == [__file__]  # the caller's line, not the package's


@pytest.mark.parametrize(("module", "name", "new"), MOVED, ids=[f"{m}.{n}" for m, n, _ in MOVED])
def test_a_from_import_of_an_old_path_warns(module: str, name: str, new: str) -> None:
    namespace: dict[str, object] = {}
    with pytest.warns(DeprecationWarning, match=_message(module, name, new)) as record:
        exec(f"from {module} import {name}", namespace)  # noqa: S102
    assert namespace[name] is _new(new)
    assert {w.filename for w in record} == {"<string>"}  # the import statement, not importlib's frames


def test_the_warning_is_an_error_under_the_repository_settings() -> None:
    """The test suite turns the deprecation warnings into errors, so no test uses an old path."""
    with pytest.raises(DeprecationWarning, match="torch_dash_optim.chain.find_dash is deprecated"):
        from torch_dash_optim.chain import find_dash  # noqa: F401


def test_an_unknown_name_is_an_attribute_error() -> None:
    for module in ["torch_dash_optim"] + [f"torch_dash_optim.{name}" for name in ("chain", "skip", "distributed")]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(AttributeError, match=rf"module '{module}' has no attribute 'no_such_name'"):
                importlib.import_module(module).no_such_name  # noqa: B018


def test_the_package_exports_the_users_names() -> None:
    assert torch_dash_optim.__all__ == [
        "DASHConfig",
        "DASHReport",
        "DASHWrapper",
        "NonFiniteGradientError",
        "ParamReport",
        "SAM",
        "find_dash",
        "on_new_data",
    ]
    assert isinstance(torch_dash_optim.__version__, str)
    namespace: dict[str, object] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec("from torch_dash_optim import *", namespace)  # noqa: S102
    assert set(namespace) - {"__builtins__"} == set(torch_dash_optim.__all__)
    home = {torch_dash_optim.find_dash.__module__, torch_dash_optim.on_new_data.__module__}
    assert home == {"torch_dash_optim.wrapper"}  # beside DASHWrapper


@pytest.mark.parametrize(
    "name",
    ["amp", "baselines", "distributed", "functional", "gather", "names", "ranks", "report", "sam", "selection",
     "state_policy", "tolerance", "units", "wrapper"],  # fmt: skip
)
def test_submodules_are_attributes_without_a_warning_and_are_listed(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module = getattr(torch_dash_optim, name)
    assert module is importlib.import_module(f"torch_dash_optim.{name}")
    assert name in dir(torch_dash_optim)


def test_dir_lists_the_public_names_but_not_the_deprecated_ones() -> None:
    listed = dir(torch_dash_optim)
    assert set(torch_dash_optim.__all__) | {"__version__", "experiments", "integrations"} <= set(listed)
    assert not {"chain", "skip", "gather_direction", "sam_amp_step"} & set(listed)
    assert not {"dash_factors"} & set(dir(importlib.import_module("torch_dash_optim.distributed")))


def test_importing_the_package_loads_only_what_the_wrapper_needs() -> None:
    code = (
        "import json, sys, torch; before = set(sys.modules); import torch_dash_optim; "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "torch_dash_optim.wrapper" in loaded  # the measurement sees the package's own imports
    assert not [m for m in loaded if any(m == n or m.startswith(n + ".") for n in NOT_LOADED)], loaded
    assert all(m.startswith("torch_dash_optim") for m in loaded), loaded  # nothing beyond torch and the package
    assert not proc.stderr, proc.stderr  # and no warning
