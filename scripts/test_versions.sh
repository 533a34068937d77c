#!/usr/bin/env bash
# The default test tier at the lowest versions setup.py allows, in a virtualenv of its
# own (.venv-lower by default): keras, TensorFlow (+ Text), keras-hub on the
# TensorFlow backend, and JAX on the JAX backend. The newest versions are what
# scripts/test.sh installs. Usage: bash scripts/test_versions.sh [pytest args]
set -uo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv-lower}"
LOWER=("keras==3.15.1" "tensorflow==2.21.0" "tensorflow-text==2.21.1" "keras-hub==0.32.0"
       "jax[cpu]==0.7.2" "absl-py==2.0.0")
python3 -m venv "${VENV}" || exit 1
# shellcheck disable=SC1091
source "${VENV}/bin/activate"
python -m pip install -q -U pip || exit 1
python -m pip install -q -e ".[jax,test]" "${LOWER[@]}" || exit 1
python -m pip list 2>/dev/null | grep -iE "^(keras|keras-hub|tensorflow|tensorflow-text|jax|jaxlib) "
status=0
for backend in tensorflow jax; do
  echo "== pytest with KERAS_BACKEND=${backend} at the lower bounds"
  KERAS_BACKEND="${backend}" python -m pytest -q -n 2 --dist loadfile "$@" || status=1
done
exit "${status}"
