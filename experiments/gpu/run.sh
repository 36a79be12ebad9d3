#!/usr/bin/env bash
# The accelerator benchmark in one command, on a machine with one NVIDIA GPU and no network:
#
#     experiments/gpu/run.sh [OUT_DIR]        # writes OUT_DIR/gpu.json (default runs/gpu, or $OUT when set)
#
# Expects jax (CUDA), flax, optax, orbax-checkpoint, chex, torch and transformers installed. mmjax's other
# dependencies come from the wheels in .whl/ (or $MMJAX_WHEELS), which experiments/gpu/fetch_wheels.sh
# downloads on a machine with network; mmjax itself runs from this checkout. Budget: under 8 minutes.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
out_dir="${1:-${OUT:-runs/gpu}}"
wheels="${MMJAX_WHEELS:-.whl}"
python="${PYTHON:-python3}"
if compgen -G "$wheels/*.whl" >/dev/null; then
  site=/tmp/mmjax-site
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
    "$wheels"/*.whl || { echo "installing the wheels in $wheels failed" >&2; exit 1; }
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
nvidia-smi -L || { echo "no NVIDIA GPU visible (nvidia-smi failed)" >&2; exit 1; }
exec "$python" experiments/gpu/bench_gpu.py --out "$out_dir" --budget_s "${MMJAX_GPU_BUDGET_S:-450}"
