"""Print a command of the README's Quick start, exactly as a new user copies it.

The Quick start section of README.md holds one ``bash`` block of exactly two commands: the
first runs the experiment, the second installs everything and runs the test suite. ``.ci/run``
runs the second through this script, so CI proves what the README tells users to type.

Usage: ``python3 scripts/readme_command.py {experiment,test} [README.md]`` (standard library
only: it runs before any virtual environment exists).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
NAMES = ("experiment", "test")


def quickstart_commands(readme: str) -> list[str]:
    """The commands of the first ``bash`` block under the ``## Quick start`` heading.

    Parameters
    ----------
    readme:
        The text of README.md.

    Returns
    -------
    list of str
        One command per non-empty, non-comment line.

    Raises
    ------
    ValueError
        If the section or its block is missing, or the block does not hold exactly two commands.
    """
    section = re.search(r"^## Quick start\n(.*?)(?=^## )", readme, flags=re.MULTILINE | re.DOTALL)
    if section is None:
        raise ValueError("README.md has no '## Quick start' section")
    block = re.search(r"^```bash\n(.*?)^```", section.group(1), flags=re.MULTILINE | re.DOTALL)
    if block is None:
        raise ValueError("the Quick start section of README.md has no ```bash block")
    lines = [line.strip() for line in block.group(1).splitlines()]
    commands = [line for line in lines if line and not line.startswith("#")]
    if len(commands) != len(NAMES):
        count = len(commands)
        raise ValueError(f"the Quick start block must hold exactly {len(NAMES)} commands, not {count}: {commands}")
    return commands


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or argv[0] not in NAMES:
        print(f"usage: python3 scripts/readme_command.py {{{','.join(NAMES)}}} [README.md]", file=sys.stderr)
        return 2
    readme = Path(argv[1]) if len(argv) == 2 else README
    print(quickstart_commands(readme.read_text(encoding="utf-8"))[NAMES.index(argv[0])])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
