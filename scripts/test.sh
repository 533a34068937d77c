#!/usr/bin/env bash
# Installs keras-multimodel with its test extras (scripts/install.sh) and torch's CPU
# build, checks style, and runs the test suite once per backend (KERAS_BACKEND is fixed
# at import time): TensorFlow, JAX, then torch.
#
# Tiers (markers on the tests themselves; see tests/conftest.py):
#   bash scripts/test.sh                 the default tier: every public API on every
#                                        backend, small shapes (about 15 minutes on 2 cores)
#   bash scripts/test.sh --run_large     adds the large tier, each large test once on one
#                                        backend: subprocess training, kill/resume,
#                                        notebooks, distribution, full exports (what CI runs)
#   bash scripts/test.sh --run_extra_large   adds the six-task notebooks (minutes each)
# Other arguments go to pytest, e.g. `-k moe` or `-n 0` (one process). Each backend's
# run uses two pytest-xdist workers, a test file to a worker (its module fixtures are
# built once): most of a test's time is one core compiling, so two workers take about
# half the time on two cores.
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
