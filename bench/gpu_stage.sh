#!/usr/bin/env bash
# Stages what `python -m bench.gpu` needs on a GPU machine that has Python 3.12 and PyTorch but
# neither ComfyUI nor network access, into .gpu/ in this repository (git-ignored):
#   ComfyUI/   ComfyUI's files, without tests*/, comfy_api_nodes/, custom nodes, models and caches
#   stub/      a stand-in comfyui_frontend_package (server.PromptServer exits without one; no page is served)
#   wheels/    cp312 manylinux wheels of the packages ComfyUI's boot needs that such a machine lacks
#   COMMIT     this repository's commit, for the results (the copy on the GPU machine may have no .git)
# Then, on the GPU machine, from the repository root (bench/gpu_run.sh does exactly this):
#   python3 -m pip install --no-index --no-deps --target /tmp/site .gpu/wheels/*.whl
#   PYTHONPATH=/tmp/site:.gpu/stub COMFYUI_PATH=$PWD/.gpu/ComfyUI python3 -m bench.gpu --budget-s 480 --json $OUT/gpu.json
#
# Usage: bench/gpu_stage.sh [--out DIR] [--no-wheels] [COMFYUI_DIR]
#   COMFYUI_DIR  defaults to $COMFYUI_PATH
#   --out DIR    stage there instead of .gpu/
#   --no-wheels  skip the download (the wheels come from PyPI through pip)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$repo/.gpu
wheels=1
comfy=${COMFYUI_PATH:-}
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=${2:?--out needs a folder}; shift 2 ;;
    --no-wheels) wheels=0; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "gpu_stage.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) comfy=$1; shift ;;
  esac
done
if [ -z "$comfy" ] || [ ! -f "$comfy/main.py" ] || [ ! -d "$comfy/comfy" ]; then
  echo "gpu_stage.sh: no ComfyUI folder: pass it as the argument or set COMFYUI_PATH (got '${comfy}')" >&2
  exit 2
fi
PY=${PYTHON:-python3}
# The versions ComfyUI 0.3.64's requirements resolve to on the development machine.
WHEELS=(torchsde==0.2.6 trampoline==0.1.2 av==18.1.0 pydantic==2.14.4 pydantic-core==2.50.5
        pydantic-settings==2.16.3 annotated-types==0.8.0 typing-inspection==0.4.5 python-dotenv==1.2.4
        typing-extensions==4.16.0)

mkdir -p "$out"
rm -rf "$out/ComfyUI" "$out/stub"
mkdir -p "$out/ComfyUI" "$out/stub/comfyui_frontend_package/static"
(cd "$comfy" && tar -c --exclude=./tests --exclude=./tests-unit --exclude=./comfy_api_nodes \
   --exclude=./.git --exclude=./.github --exclude=./.ci --exclude='./custom_nodes/*' --exclude='./models/*' \
   --exclude='./input/*' --exclude='./output/*' --exclude='./temp/*' --exclude='./user/*' \
   --exclude=__pycache__ --exclude='*.pyc' .) | tar -x -C "$out/ComfyUI"

echo '"""Stand-in for ComfyUI'"'"'s frontend package: bench.gpu serves no page."""' \
  > "$out/stub/comfyui_frontend_package/__init__.py"
echo '<!doctype html><title>no frontend staged</title>' > "$out/stub/comfyui_frontend_package/static/index.html"

git -C "$repo" rev-parse --short HEAD > "$out/COMMIT" 2>/dev/null || echo unknown > "$out/COMMIT"

if [ "$wheels" = 1 ]; then
  mkdir -p "$out/wheels"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$out/wheels" "${WHEELS[@]}"
fi

du -sh "$out"/* | sed 's/^/  /'
total_kb=$(du -sk "$out" | cut -f1)
echo "staged $out: $((total_kb / 1024)) MiB"
echo "on the GPU machine, from the repository root: bash bench/gpu_run.sh --budget-s 480 --json \$OUT/gpu.json"
