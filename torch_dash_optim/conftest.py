"""Doctest namespace: every docstring example may use ``torch``."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace: dict) -> None:
    doctest_namespace["torch"] = torch
    torch.manual_seed(0)
