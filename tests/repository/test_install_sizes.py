"""scripts/install_sizes.py: the size helpers on a fake venv and the sentences it renders.

No test here creates a venv or installs anything.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # as scripts/published.py imports renderers
    sys.path.insert(0, str(ROOT))

from scripts import install_sizes  # noqa: E402


def _file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A fake site-packages: torch, the nvidia namespace, triton, cuda_pathfinder, their dist-info."""
    sp = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    _file(sp / "torch" / "lib" / "libtorch_cpu.so", 1000)
    _file(sp / "torch-2.14.1.dist-info" / "RECORD", 10)
    _file(sp / "nvidia" / "cublas" / "lib" / "libcublas.so.13", 300)
    _file(sp / "nvidia" / "cudnn" / "lib" / "libcudnn.so.9", 200)
    _file(sp / "nvidia_cublas-13.0.dist-info" / "RECORD", 7)
    _file(sp / "triton" / "_C" / "libtriton.so", 50)
    _file(sp / "triton-3.6.0.dist-info" / "METADATA", 3)
    _file(sp / "cuda_pathfinder" / "__init__.py", 2)
    _file(sp / "sympy" / "__init__.py", 40)
    _file(sp / "NVIDIA_extra.pth", 1)  # the prefix is matched case-insensitively
    return sp


def test_tree_bytes_sums_regular_files_and_does_not_follow_links(tmp_path: Path) -> None:
    _file(tmp_path / "a" / "one", 5)
    _file(tmp_path / "a" / "b" / "two", 7)
    _file(tmp_path / "elsewhere" / "big", 1000)
    os.symlink(tmp_path / "elsewhere", tmp_path / "a" / "dir-link")
    os.symlink(tmp_path / "elsewhere" / "big", tmp_path / "a" / "file-link")
    assert install_sizes.tree_bytes(tmp_path / "a") == 12
    assert install_sizes.tree_bytes(tmp_path / "a" / "one") == 5
    assert install_sizes.tree_bytes(tmp_path / "a" / "file-link") == 0


def test_cuda_entries_are_the_nvidia_triton_and_cuda_names(site: Path) -> None:
    assert install_sizes.cuda_entries(site) == [
        "NVIDIA_extra.pth",
        "cuda_pathfinder",
        "nvidia",
        "nvidia_cublas-13.0.dist-info",
        "triton",
        "triton-3.6.0.dist-info",
    ]
    assert install_sizes.cuda_bytes(site) == 300 + 200 + 7 + 50 + 3 + 2 + 1
    assert install_sizes.tree_bytes(site.parents[2]) == 1613


def _results(tmp_path: Path, **cpu_torch: str) -> Path:
    data = {
        "command": "python scripts/install_sizes.py --out results/install-sizes",
        "date": "2026-12-03",
        "venvs": {
            "pypi": {"torch": "2.14.1+cu130", "venv_bytes": 5_349_999_999, "cuda_bytes": 4_050_000_001},
            "cpu": {"torch": cpu_torch.get("torch", "2.13.0+cpu"), "venv_bytes": 749_999_999, "cuda_bytes": 0},
        },
    }
    path = tmp_path / "install-sizes.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_the_readme_sentence_rounds_to_one_decimal_gb_and_names_its_command(tmp_path: Path) -> None:
    text = install_sizes.readme_sentence("md", _results(tmp_path))
    assert text == (
        "Measured here, torch 2.14.1 from PyPI takes 5.3 GB in a fresh venv, 4.1 GB of it CUDA and "
        "Triton libraries, where the CPU build of torch 2.13.0 takes 0.7 GB "
        "(`python scripts/install_sizes.py --out results/install-sizes`, on 2026-12-03; GB = 10⁹ bytes)."
    )


def test_the_install_page_sentence_is_rest(tmp_path: Path) -> None:
    text = install_sizes.install_page_sentence("rst", _results(tmp_path))
    assert "torch 2.14.1 from PyPI takes 5.3 GB, 4.1 GB of it CUDA" in text
    assert "the CPU build of torch 2.13.0 takes 0.7 GB" in text
    assert "(``python scripts/install_sizes.py --out results/install-sizes``, on 2026-12-03;" in text


def test_a_build_that_is_not_the_cpu_one_is_named(tmp_path: Path) -> None:
    text = install_sizes.readme_sentence("md", _results(tmp_path, torch="2.13.0+cu128"))
    assert "the 2.13.0+cu128 build of torch 2.13.0 takes 0.7 GB" in text


def test_a_missing_results_file_names_the_command_that_writes_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing; regenerate it with: python scripts/install_sizes.py --out"):
        install_sizes.readme_sentence("md", tmp_path / "install-sizes.json")


def test_an_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fmt='html' must be 'md' or 'rst'"):
        install_sizes.install_page_sentence("html", _results(tmp_path))


def test_a_failed_step_shows_its_stderr_and_the_command_to_rerun() -> None:
    with pytest.raises(
        RuntimeError, match=r"(?s)failed \(exit 1\):\nno torch here\n.*rerun: python scripts/install_sizes"
    ):
        install_sizes._run([sys.executable, "-c", "import sys; sys.exit('no torch here')"])
