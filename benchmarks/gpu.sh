#!/usr/bin/env bash
# One prepared run on a machine with an NVIDIA GPU (the `device` tool lends one to
# some sessions): the default tier's GPU-relevant tests, train_step.py with the
# `base` preset on both backends in float32 and mixed_bfloat16, and the main job's
# `train` wall time on JAX. Writes everything under ${OUT:-gpu-results}/.
# Test it on CPU with GPU_SH_QUICK=1 (tiny sizes, a few steps).
# Usage: bash benchmarks/gpu.sh   (from the repository root, after scripts/install.sh)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-results}"
mkdir -p "${OUT}"
if [ "${GPU_SH_QUICK:-0}" = 1 ]; then
  PRESET=tiny; STEPS=3; TRAIN_STEPS=4; TESTS="tests/test_moe_layer.py"
else
  PRESET=base; STEPS=20; TRAIN_STEPS=2100
  TESTS="tests/test_moe_layer.py tests/test_multimodel.py tests/test_attention_block.py tests/test_conv_block.py tests/test_export.py"
fi
(nvidia-smi || echo "no nvidia-smi: running on CPU") > "${OUT}/device.txt" 2>&1
status=0
for backend in jax tensorflow; do
  echo "== tests on ${backend}"
  # shellcheck disable=SC2086
  KERAS_BACKEND="${backend}" python -m pytest -q ${TESTS} > "${OUT}/tests-${backend}.txt" 2>&1 \
    || status=1
  tail -1 "${OUT}/tests-${backend}.txt"
done
for policy in float32 mixed_bfloat16; do
  echo "== train_step.py ${PRESET} ${policy}"
  python benchmarks/train_step.py --presets="${PRESET}" --steps="${STEPS}" \
    --dtype_policy="${policy}" > "${OUT}/train_step-${policy}.txt" 2>&1 || status=1
  grep -E "^\|" "${OUT}/train_step-${policy}.txt"
done
echo "== main job train (JAX, ${TRAIN_STEPS} steps)"
start=$(date +%s)
KERAS_BACKEND=jax python -m keras_multimodel train --output_dir="${OUT}/main" \
  --train_steps="${TRAIN_STEPS}" > "${OUT}/train.txt" 2>&1 || status=1
echo "train: $(( $(date +%s) - start )) s" | tee -a "${OUT}/train.txt"
exit "${status}"
