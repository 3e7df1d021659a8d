#!/usr/bin/env python3
"""How much disk torch takes in a venv, with and without NVIDIA's CUDA libraries.

Measures (one run, a few minutes, ~6 GB of scratch disk)::

    python scripts/install_sizes.py --out results/install-sizes

creates two throwaway venvs (``python3 -m venv``) in a temporary folder, runs ``pip install
torch==2.14.1`` (the PyPI build, which brings CUDA and Triton) in one and ``pip install
torch==2.13.0`` (the CPU build here) in the other, measures each venv and deletes it, and
writes ``results/install-sizes/install-sizes.json``.

What is measured, for each venv:

- ``venv_bytes``: the sum of the apparent sizes (``st_size``) of every regular file under the
  venv folder, walked without following symbolic links; links themselves count 0 bytes.
  ``du -s --apparent-size --block-size=1`` reads a little higher (it also counts each folder's
  own size), and plain ``du -sh`` reports blocks used, in GiB (2**30 bytes).
- ``cuda_bytes``: the same sum over the *CUDA and Triton distributions*: every top-level entry
  of ``site-packages`` whose name, lower-cased, starts with ``nvidia``, ``triton`` or ``cuda``
  (the ``nvidia/`` namespace folder, ``triton/``, ``cuda/``-style packages, and their
  ``*.dist-info`` folders); the names counted are recorded in ``cuda_entries``. CUDA code
  inside ``torch/lib`` itself (``libtorch_cuda.so``) is not counted.

The README and the Installation page quote these numbers through the renderers below
(:func:`readme_sentence`, :func:`install_page_sentence`; see ``scripts/published.py``), in GB
of 10**9 bytes with one decimal.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The committed results file the renderers read.
RESULTS = ROOT / "results" / "install-sizes" / "install-sizes.json"
COMMAND = "python scripts/install_sizes.py --out results/install-sizes"
#: What each venv installs, by its key in the results file.
INSTALLS = {"pypi": "torch==2.14.1", "cpu": "torch==2.13.0"}
#: Top-level site-packages names (lower-cased prefixes) counted as CUDA and Triton libraries.
CUDA_PREFIXES = ("nvidia", "triton", "cuda")


def tree_bytes(path: Path) -> int:
    """Sum of the apparent sizes of the regular files under ``path``, not following symlinks.

    Parameters
    ----------
    path
        A file or folder; a symbolic link counts 0 bytes and is not followed.

    Returns
    -------
    int
        Bytes (``st_size``), as ``du -s --apparent-size`` counts files.
    """
    mode = os.lstat(path).st_mode
    if stat.S_ISREG(mode):
        return os.lstat(path).st_size
    if not stat.S_ISDIR(mode):
        return 0
    total = 0
    for folder, _, files in os.walk(path, followlinks=False):
        for name in files:
            st = os.lstat(os.path.join(folder, name))
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def cuda_entries(site_packages: Path) -> list[str]:
    """The top-level entries of ``site_packages`` counted as CUDA and Triton libraries, sorted."""
    return sorted(p.name for p in site_packages.iterdir() if p.name.lower().startswith(CUDA_PREFIXES))


def cuda_bytes(site_packages: Path) -> int:
    """Bytes of the entries :func:`cuda_entries` names (see :func:`tree_bytes`)."""
    return sum(tree_bytes(site_packages / name) for name in cuda_entries(site_packages))


def _run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(cmd)} failed (exit {done.returncode}):\n{done.stderr.strip()}\n"
            "check that pip can reach the torch wheels (pip config list), then rerun: " + COMMAND
        )
    return done.stdout.strip()


def measure_install(requirement: str, scratch: Path) -> dict:
    """Install ``requirement`` into a new venv under ``scratch``, measure it, delete it."""
    venv = scratch / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    try:
        _run([python, "-m", "pip", "install", "--no-cache-dir", "--quiet", requirement])
        site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]))
        sizes = {"venv_bytes": tree_bytes(venv), "cuda_bytes": cuda_bytes(site), "cuda_entries": cuda_entries(site)}
        # measured before importing torch, which could add bytecode files to the venv
        return {
            "requirement": requirement,
            "torch": _run([python, "-c", "import torch; print(torch.__version__)"]),
            "pip": _run([python, "-m", "pip", "--version"]).split()[1],
            **sizes,
        }
    finally:
        shutil.rmtree(venv)


def measure(command: str = COMMAND) -> dict:
    """Both installs (see :data:`INSTALLS`) and where they were measured, by ``command``."""
    started = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory(prefix="install-sizes-") as scratch:
        venvs = {key: measure_install(req, Path(scratch)) for key, req in INSTALLS.items()}
    return {
        "command": command,
        "date": started.strftime("%Y-%m-%d"),
        "started_utc": started.isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "os": platform.platform(),
        "bytes_per_gb": 10**9,
        "cuda_prefixes": list(CUDA_PREFIXES),
        "venvs": venvs,
    }


def load(path: Path | None = None) -> dict:
    """The committed results file; a missing one raises naming the command that writes it."""
    path = path or RESULTS
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; regenerate it with: {COMMAND}")
    return json.loads(path.read_text(encoding="utf-8"))


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def _release(version: str) -> str:
    """``"2.14.1+cu130"`` -> ``"2.14.1"``."""
    return version.split("+")[0]


def _words(fmt: str, data: dict) -> dict[str, str]:
    """The pieces both sentences share, from a results file's contents."""
    if fmt not in ("md", "rst"):
        raise ValueError(f"fmt={fmt!r} must be 'md' or 'rst'")
    pypi, cpu = data["venvs"]["pypi"], data["venvs"]["cpu"]
    build = "the CPU build" if cpu["torch"].endswith("+cpu") else f"the {cpu['torch']} build"
    quote = "`" if fmt == "md" else "``"
    return {
        "pypi": f"torch {_release(pypi['torch'])} from PyPI takes {_gb(pypi['venv_bytes'])}",
        "cuda": f"{_gb(pypi['cuda_bytes'])} of it CUDA and Triton libraries",
        "cpu": f"{build} of torch {_release(cpu['torch'])} takes {_gb(cpu['venv_bytes'])}",
        "source": f"{quote}{data['command']}{quote}, on {data['date']}; GB = 10\N{SUPERSCRIPT NINE} bytes",
    }


def readme_sentence(fmt: str, path: Path | None = None) -> str:
    """The README's CPU-only sentence: the venv sizes with and without CUDA, and their command."""
    w = _words(fmt, load(path))
    return f"Measured here, {w['pypi']} in a fresh venv, {w['cuda']}, where {w['cpu']} ({w['source']})."


def install_page_sentence(fmt: str, path: Path | None = None) -> str:
    """The Installation page's CPU-only sentence (same numbers as :func:`readme_sentence`)."""
    w = _words(fmt, load(path))
    return f"Measured in a fresh venv: {w['pypi']}, {w['cuda']}; {w['cpu']} ({w['source']})."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write install-sizes.json into")
    args = parser.parse_args(argv)
    data = measure(f"python scripts/install_sizes.py --out {shlex.quote(args.out.as_posix())}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "install-sizes.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    for key, v in data["venvs"].items():
        print(f"{key}: torch {v['torch']}: venv {_gb(v['venv_bytes'])}, CUDA and Triton {_gb(v['cuda_bytes'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
