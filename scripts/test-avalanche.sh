#!/usr/bin/env bash
# The Avalanche recipe (docs/guide/integrations.rst), with the real avalanche-lib from the project's
# `avalanche` extra. It is in no other extra (about 40 packages: wandb, tensorboard, scikit-learn...),
# so this job adds it to the venv of the main suite afterwards; DASH_REQUIRE_AVALANCHE=1 makes its
# absence a failure. Run by .ci/run after the main suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[avalanche]"
DASH_REQUIRE_AVALANCHE=1 python -m pytest -q -p no:cacheprovider tests/integrations/test_avalanche.py
