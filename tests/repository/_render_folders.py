"""What the tests of the renderers share: the folder names and setting of the small
results folders (written by the ``results`` fixture of ``conftest.py``) and the checks of a render.
"""

from __future__ import annotations

import docutils.core
import pytest

from torch_dash_optim.experiments import ProtocolConfig

CONFIG = ProtocolConfig(num_chunks=2, lr=0.05, batch_size=16, max_epochs=2)
#: A 1-D CNN with every default method, and a 2-D CNN without the warm start (two seeds each).
CNN_DIR, CNN2D_DIR = "experiments-mnist1d-cnn1d", "experiments-mnist-cnn2d"


def rst_problems(text: str) -> list[str]:
    """Warnings and errors docutils reports on ``text`` (an empty list for valid reST)."""
    doc = docutils.core.publish_doctree(text, settings_overrides={"report_level": 5, "halt_level": 5})
    return [node.astext() for node in doc.findall() if node.tagname == "system_message" and node["level"] >= 2]


def check_renders(render, folders: list[str]) -> None:
    """``render`` gives valid, non-empty Markdown and reST without ``nan``, and refuses another format."""
    md, rst = render("md", *folders), render("rst", *folders)
    assert md.strip() and rst.strip()
    assert rst_problems(rst) == []
    assert "nan" not in md and "nan" not in rst
    with pytest.raises(ValueError, match="fmt='html' must be 'md' or 'rst'"):
        render("html", *folders)
