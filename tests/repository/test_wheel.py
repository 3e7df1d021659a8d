"""The wheel is the library: built from the clone, it holds no tooling, and it works installed alone.

The wheel is built from a copy of the clone (``pip wheel --no-build-isolation``: no network),
then installed into a fresh venv in a temporary folder outside any clone. The venv gets torch
(and the ``experiments`` extra's packages) without a copy: a ``.pth`` file appends this
interpreter's site-packages after the venv's own. Files are not read through that ``.pth``'s
own ``.pth`` files, so the editable install of the clone stays invisible, which
:func:`test_the_installed_package_is_the_wheels` checks. Everything runs from a temporary
working directory.

A slower check (about a minute: a wheel, a venv, a ``dash-warmstart --quick`` run); it runs in
the normal suite, marked ``slow`` only so that a quick local loop can leave it out.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "torch_dash_optim"

pytestmark = pytest.mark.slow

# Without git: what a build never needs from the clone (and what would make the copy slow or large).
_NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis",
    ".ruff_cache", "_build", "results", "warmstart-results", "runs", "*.pt",
)
# Folders of the repository that are tooling, not the library.
_TOOLING = ("tests", "benchmarks", "scripts", "docs", "examples", "results")


def _copy_clone(source: Path) -> None:
    """Copy the files git would commit (tracked and untracked, not ignored); without git, all but _NOT_COPIED."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True, timeout=120,
        ).stdout.decode().split("\0")
    except (OSError, subprocess.SubprocessError):
        shutil.copytree(ROOT, source, ignore=_NOT_COPIED)
        return
    for name in filter(None, listed):
        path = ROOT / name
        if path.is_file():  # not a file deleted from the working tree
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, source / name)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the clone (the build writes into its source folder)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    _copy_clone(source)
    dist = tmp / "dist"
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
               "-w", str(dist), str(source)]
    result = subprocess.run(command, cwd=tmp, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = dist.glob("torch_dash_optim-*.whl")
    return path


def _outer_site_packages() -> list[str]:
    """This interpreter's site-packages (where torch is), never the clone itself."""
    import torch

    found = [*site.getsitepackages(), str(Path(torch.__file__).resolve().parents[1])]
    out: list[str] = []
    for entry in found:
        path = Path(entry).resolve()
        if path.is_dir() and path != ROOT and str(path) not in out:
            out.append(str(path))
    return out


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside any clone, holding the wheel, seeing torch through a ``.pth`` file."""
    home = tmp_path_factory.mktemp("venv")
    env = home / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=300)
    python = env / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout.strip()
    # after the venv's own site-packages: the wheel's package wins over anything found there
    (Path(purelib) / "zz_outer_site_packages.pth").write_text("\n".join(_outer_site_packages()) + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
               "--no-cache-dir", str(wheel)]
    result = subprocess.run(install, capture_output=True, text=True, timeout=600, env=_clean_env(env))
    assert result.returncode == 0, result.stdout + result.stderr
    return env


def _clean_env(env: Path) -> dict[str, str]:
    """The environment of a command in the venv: nothing pointing at the clone or another venv."""
    out = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    out.update(VIRTUAL_ENV=str(env), PYTHONNOUSERSITE="1")
    out["PATH"] = f"{env / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    return out


def _run(env: Path, cwd: Path, *command: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run a command of the venv from ``cwd`` (outside any clone)."""
    return subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=_clean_env(env))


def _problems(names: list[str]) -> list[str]:
    """What in a wheel's file list is not the library."""
    problems = []
    for name in names:
        path = PurePosixPath(name)
        top, stem = path.parts[0], path.stem
        if top.endswith(".dist-info") or top == "_dash_warmstart.py":
            continue
        if top != PACKAGE:
            problems.append(f"{name}: outside the package" + (" (repository tooling)" if top in _TOOLING else ""))
        elif path.name == "conftest.py":
            problems.append(f"{name}: a pytest conftest file")
        elif stem.startswith("test_") or stem.endswith("_test") or "tests" in path.parts[1:]:
            problems.append(f"{name}: a test file")
        elif any(re.match(r"publish|render", PurePosixPath(part).stem) for part in path.parts[1:]):
            problems.append(f"{name}: a renderer of the README/docs")
        elif not (path.suffix == ".py" or path.name == "py.typed"):
            problems.append(f"{name}: not a module of the library")
    return problems


def test_the_problem_finder_names_each_kind_of_stray_file() -> None:
    names = [
        "torch_dash_optim/__init__.py",
        "torch_dash_optim/experiments/cli.py",
        "_dash_warmstart.py",
        "torch_dash_optim-0.3.0.dist-info/RECORD",
        "torch_dash_optim/conftest.py",
        "torch_dash_optim/experiments/publish_mechanism.py",
        "torch_dash_optim/render.py",
        "torch_dash_optim/test_wrapper.py",
        "tests/test_wrapper.py",
        "benchmarks/bench_step.py",
        "scripts/render/publish.py",
        "torch_dash_optim/data.csv",
    ]
    assert [p.split(":")[0] for p in _problems(names)] == names[4:]


def test_the_wheel_holds_the_library_and_nothing_else(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    modules = {n for n in names if n.startswith(f"{PACKAGE}/") and n.endswith(".py")}
    assert {f"{PACKAGE}/__init__.py", f"{PACKAGE}/wrapper.py", f"{PACKAGE}/experiments/cli.py"} <= modules
    assert "_dash_warmstart.py" in names  # the console script's light entry point
    problems = _problems(names)
    assert not problems, "the wheel holds files that are not the library:\n" + "\n".join(problems)


def test_the_installed_package_is_the_wheels(venv: Path, tmp_path: Path) -> None:
    code = (
        "import sys, torch, torch_dash_optim, _dash_warmstart\n"
        "print(torch_dash_optim.__file__); print(_dash_warmstart.__file__); print(torch.__version__)\n"
        "from torch_dash_optim import DASHWrapper, SAM\n"
        "model = torch.nn.Linear(3, 2)\n"
        "opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, "
        "loss_fn=torch.nn.functional.cross_entropy)\n"
        "report = opt.on_new_data([(torch.randn(8, 3), torch.randint(0, 2, (8,)))])\n"
        "print(0 < report.mean_factor <= 1)\n"
    )
    result = _run(venv, tmp_path, str(venv / "bin" / "python"), "-c", code)
    assert result.returncode == 0, result.stderr
    package, entry, torch_version, shrunk = result.stdout.split()
    for path in (package, entry):
        assert Path(path).resolve().is_relative_to(venv.resolve()), f"{path} is not the venv's: the clone is visible"
        assert not Path(path).resolve().is_relative_to(ROOT)
    import torch

    assert torch_version == torch.__version__ and shrunk == "True"


def test_dash_warmstart_quick_runs_from_the_wheel(venv: Path, tmp_path: Path) -> None:
    out = tmp_path / "quick"
    result = _run(venv, tmp_path, str(venv / "bin" / "dash-warmstart"), "--quick", "--jobs", "1", "--no-progress",
                  "--out", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "SMOKE RUN (--quick)" in result.stdout and "Who won" in result.stdout
    for name in ("summary.md", "experiments.csv", "experiments.json", "dash-factors.csv", "provenance.json"):
        assert (out / name).is_file(), name
    assert "Traceback" not in result.stderr


def test_run_protocol_runs_from_the_wheel(venv: Path, tmp_path: Path) -> None:
    code = (
        "import torch\n"
        "from torch.utils.data import TensorDataset\n"
        "import torch_dash_optim.experiments as ex\n"
        "x, y = torch.randn(60, 4), torch.randint(0, 2, (60,))\n"
        "records = ex.run_protocol(TensorDataset(x[:40], y[:40]), TensorDataset(x[40:], y[40:]),\n"
        "    lambda: torch.nn.Linear(4, 2), methods=['warm', 'dash'], out='res',\n"
        "    config=ex.ProtocolConfig(num_chunks=2, lr=0.1, max_epochs=3), progress=False)\n"
        "print(ex.__file__)\n"
        "print(sorted((r['method'], r['experiment']) for r in records))\n"
        "print(records[-1]['dash_mean_factor'] is not None)\n"
    )
    result = _run(venv, tmp_path, str(venv / "bin" / "python"), "-c", code)
    assert result.returncode == 0, result.stderr
    where, pairs, factor = result.stdout.splitlines()
    assert Path(where).resolve().is_relative_to(venv.resolve())
    assert pairs == "[('dash', 1), ('dash', 2), ('warm', 1), ('warm', 2)]" and factor == "True"
    assert (tmp_path / "res" / "experiments.csv").is_file()


def test_the_venv_sees_torch_through_the_pth_file_not_a_copy(venv: Path) -> None:
    purelib = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    assert (purelib / PACKAGE).is_dir() and not (purelib / "torch").exists()
