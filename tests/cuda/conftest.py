"""CUDA tests: selected with ``-m cuda`` (``scripts/gpu-check`` runs them), skipped without a GPU.

Every test here takes the ``device`` fixture. It is ``"cuda"``; with the environment variable
``DASH_CUDA_TESTS_ON_CPU=1`` it is ``"cpu"`` instead, which runs the same checks on CPU (with
gloo instead of NCCL) to prove the tests themselves before a GPU is at hand.
"""

from __future__ import annotations

import os

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS, before CUDA starts

import pytest  # noqa: E402
import torch  # noqa: E402

ON_CPU = os.environ.get("DASH_CUDA_TESTS_ON_CPU") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (run with -m cuda; scripts/gpu-check runs them)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    skip = pytest.mark.skip(reason="needs CUDA (or DASH_CUDA_TESTS_ON_CPU=1 to run them on CPU)")
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.cuda)
            if not ON_CPU and not torch.cuda.is_available():
                item.add_marker(skip)


@pytest.fixture
def device() -> torch.device:
    """The device under test: CUDA, or CPU under ``DASH_CUDA_TESTS_ON_CPU=1``."""
    return torch.device("cpu" if ON_CPU else "cuda")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
