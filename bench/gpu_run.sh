#!/usr/bin/env bash
# Runs `python -m bench.gpu` with what bench/gpu_stage.sh staged (a machine with PyTorch but no
# ComfyUI): installs the staged wheels into $FASTVMT_SITE (default /tmp/fastvmt-site) without
# network, puts them and the stand-in frontend package on PYTHONPATH, points COMFYUI_PATH at the
# staged ComfyUI and passes its arguments on. Run it from the repository root:
#   bash bench/gpu_run.sh --budget-s 480 --json $OUT/gpu.json
# FASTVMT_GPU_STAGE: the staged folder (default .gpu/ in this repository); PYTHON: default python3.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
stage=$(cd "${FASTVMT_GPU_STAGE:-$repo/.gpu}" && pwd)
site=${FASTVMT_SITE:-/tmp/fastvmt-site}
PY=${PYTHON:-python3}
if [ ! -d "$stage/ComfyUI" ]; then
  echo "gpu_run.sh: nothing staged in $stage; run bench/gpu_stage.sh on a machine with ComfyUI first" >&2
  exit 2
fi
shopt -s nullglob
whl=("$stage"/wheels/*.whl)
if [ ${#whl[@]} -gt 0 ]; then
  "$PY" -m pip install -q --upgrade --no-index --no-deps --target "$site" "${whl[@]}"
fi
export PYTHONPATH="$site:$stage/stub${PYTHONPATH:+:$PYTHONPATH}"
export COMFYUI_PATH="$stage/ComfyUI"
export FASTVMT_COMMIT="$(cat "$stage/COMMIT" 2>/dev/null || echo unknown)"
cd "$repo"
exec "$PY" -m bench.gpu "$@"
