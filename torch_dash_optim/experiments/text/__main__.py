"""``python -m torch_dash_optim.experiments.text``: the text experiment's command line (see ``cli.py``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
