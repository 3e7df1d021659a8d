#!/usr/bin/env bash
# The whole test suite: unit and property tests, doctests, examples, and the docs build.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -q -p no:cacheprovider
