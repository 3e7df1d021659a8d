"""``python -m torch_dash_optim.experiments``: the warm-start harness (see :mod:`.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
