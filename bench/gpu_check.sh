#!/usr/bin/env bash
# One prepared GPU check for issue 28 (stage 1 at scale): prints ONE JSON object as the last line of stdout.
#
#   bash bench/gpu_check.sh            # one H100, <= 8 minutes: stage-1 full step vs plain diffusers (bf16,
#                                      # batch 32 eager and 64 compiled), precompute img/s, stage-2 --config paper
#                                      # train samples/s and predict images/s, peak GPU memory of each
#   bash bench/gpu_check.sh --smoke    # CPU (or any device), tiny sizes, seconds; same as IMDD_GPU_CHECK_SMOKE=1
#
# Runs from any directory; uses $PYTHON (default: python) with this checkout first on the path. Progress and
# tracebacks go to stderr; a section that fails is listed under "errors" and the others still run.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false
exec "${PYTHON:-python}" "$HERE/gpu_check.py" "$@"
