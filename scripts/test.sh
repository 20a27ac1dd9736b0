#!/usr/bin/env bash
# README command (2): set up a virtualenv (pinned CPU torch + the package with test extras) and
# run the whole test suite under a real X server. Safe to re-run; reuses .venv when present.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# torch is pinned to the CPU wheel here (and only here and in tox.ini): an unpinned torch pulls
# the newest CUDA build with several GB of packages. Package metadata keeps a lower bound only.
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[testing]"

# pytest-xvfb starts Xvfb for the GUI tests; never QT_QPA_PLATFORM=offscreen (vispy crashes).
unset QT_QPA_PLATFORM
export CI="${CI:-true}"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
