#!/usr/bin/env bash
# Installs keras-multimodel (editable, with the JAX backend, test and docs tools) and the
# system programs its bundled tasks read: espeak-ng (synthesises the speech task's
# audio) and pocketsphinx-testdata (real recordings, an extra speech test set).
# On Debian/Ubuntu it uses apt-get (with sudo unless run as root); elsewhere it says
# what to install (macOS: `brew install espeak-ng`).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v espeak-ng >/dev/null || [ ! -d /usr/share/pocketsphinx/test/data ]; then
  if command -v apt-get >/dev/null; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    ${sudo} apt-get update -qq
    DEBIAN_FRONTEND=noninteractive ${sudo} apt-get install -y -qq espeak-ng pocketsphinx-testdata >/dev/null
  else
    echo "warning: install espeak-ng (e.g. brew install espeak-ng) for the speech task" >&2
  fi
fi
python -m pip install -q -e ".[jax,test,docs]"
