#!/usr/bin/env bash
# The GPU checks of issue 13 in one run (a machine with an NVIDIA GPU, EGL and CUDA torch; heightfusion
# installed): which devices the code picks, the GL and stereo tests on them, then the benchmarks (and with
# PROFILE=1 where a frame's time goes).
#     [PROFILE=1] benchmarks/gpu_checks.sh REAL_SAMPLE_DIR [LOG_DIR] [REAL_FRAMES]
# Each step has a time limit so that one slow step cannot take the others' time; logs go to LOG_DIR.
set -uo pipefail
cd "$(dirname "$0")/.."
export HEIGHTFUSION_REAL_SAMPLE="${1:?real sample folder}" PYTHONUNBUFFERED=1
logs="${2:-.}"
frames="${3:-80}"
step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  echo "=== $name (limit ${limit} s) $(date +%T)"
  timeout "$limit" "$@" 2>&1 | tee "$logs/$name.log"
  echo "=== $name: exit ${PIPESTATUS[0]}"
}
nvidia-smi -L
step devices 60 heightfusion info
step tests 90 python3 -m pytest -q -p no:cacheprovider tests/test_render_gl.py tests/test_gl_accumulate.py \
  tests/test_stereo.py tests/test_fusion.py tests/test_backends.py
step realtime 240 python3 benchmarks/bench_realtime.py --frames "$frames" --synthetic-frames 30
step render 40 python3 benchmarks/bench_render.py
step fusion 60 python3 benchmarks/bench_fusion.py --repeats 20
[ "${PROFILE:-0}" = 1 ] && step profile 60 python3 benchmarks/profile_frame.py --frames 40 --top 25
