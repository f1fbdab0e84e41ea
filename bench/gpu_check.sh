#!/usr/bin/env bash
# GPU readiness and speed check (bench/README.md, "GPU check"): installs the carried wheels, runs the CUDA tests
# and times full-size random-weight architectures (bench/gpu_check.py); writes gpu_check.md, gpu_check.json and
# gpu_tests.txt to the output folder and prints the table. Wall time <= GPU_CHECK_BUDGET_S (420) + install + 40 s.
#
#   bash bench/gpu_check.sh [--dry-run] [WHEEL_DIR=.whl] [OUT_DIR=$OUT, else bench/out]
#
# WHEEL_DIR holds the wheels ../shared/gpu/fetch-wheels.sh downloaded on the CPU machine (diffusers, trimesh,
# xatlas, pyzmq, ...); they are installed into /tmp/site (the machine is offline). --dry-run: tiny configs on the
# CPU, no install, budget 60 s (tests/test_gpu_readiness.py runs it). PYTHON picks the interpreter (python3);
# GPU_CHECK_SECTIONS=edit,scaling reruns only some sections; GPU_CHECK_BUDGET_S sets the budget.
set -euo pipefail
cd "$(dirname "$0")/.."
dry=0
pos=()
for a in "$@"; do
  case "$a" in
    --dry-run) dry=1 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    -*) echo "gpu_check.sh: unknown option $a" >&2; exit 2 ;;
    *) pos+=("$a") ;;
  esac
done
whl=${pos[0]:-.whl}
out=${pos[1]:-${OUT:-bench/out}}
py=${PYTHON:-python3}
mkdir -p "$out"
flags=()
[[ -n ${GPU_CHECK_SECTIONS:-} ]] && flags+=(--sections "$GPU_CHECK_SECTIONS")
if [[ $dry == 1 ]]; then
  budget=${GPU_CHECK_BUDGET_S:-60}
  flags+=(--dry-run)
else
  budget=${GPU_CHECK_BUDGET_S:-420}
  if compgen -G "$whl/*.whl" >/dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$whl"/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  else
    echo "gpu_check.sh: no wheels in $whl (../shared/gpu/fetch-wheels.sh $whl on the CPU machine); using what is installed" >&2
  fi
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
exec timeout -k 10 $((budget + 40)) "$py" bench/gpu_check.py --out "$out" --budget-s "$budget" ${flags[@]+"${flags[@]}"}
