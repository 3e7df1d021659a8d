#!/usr/bin/env bash
# The lowest supported torch (the floor in pyproject.toml): the core tests on torch 2.13.0.
# Builds its own venv (.venv-floor) with only torch, numpy, pytest and hypothesis, so that
# nothing from the extras can hide a dependency of the core. Run by .ci/run after the main suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-floor
.venv-floor/bin/python -m pip install -q --upgrade pip
.venv-floor/bin/python -m pip install -q torch==2.13.0 numpy pytest hypothesis
.venv-floor/bin/python -m pip install -q --no-deps -e .
.venv-floor/bin/python -c "import torch; print('floor check on torch', torch.__version__)"
# The core: everything but the experiment harness, the integrations (each needs an extra) and the checks of the
# repository itself (docs, examples, benchmarks, published numbers: they need the dev extras and are run by the
# main suite).
.venv-floor/bin/python -m pytest -q -p no:cacheprovider -o addopts="-ra" tests \
    --ignore=tests/experiments --ignore=tests/integrations --ignore=tests/repository
