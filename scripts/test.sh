#!/usr/bin/env bash
# Installs keras-multimodel with its test extras (scripts/install.sh) and torch's CPU
# build, checks style, and runs the test suite once per backend (KERAS_BACKEND is fixed
# at import time): TensorFlow, JAX, then torch (which skips what it does not support,
# naming why: tests/conftest.py). Each run uses two pytest-xdist workers, a test file
# to a worker (its module fixtures are built once): most of a test's time is one core
# compiling or starting a process, so two workers take about half the time on two
# cores. Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"` or
# `-n 0` (one process); `KMM_FULL_TESTS=1` also runs what the default run leaves out.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh || exit 1
# torch pinned: this version's CPU wheel (an unpinned torch pulls a multi-GB CUDA build).
python -m pip install -q "torch==2.13.0" || exit 1
ruff check . || exit 1
status=0
for backend in tensorflow jax torch; do
  echo "== pytest with KERAS_BACKEND=${backend}"
  KERAS_BACKEND="${backend}" python -m pytest -q -n 2 --dist loadfile "$@" || status=1
done
exit "${status}"
