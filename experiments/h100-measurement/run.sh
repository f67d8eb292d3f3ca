#!/usr/bin/env bash
# The H100 measurement of issue 4 (REPORT.md beside this file), run from the repo root:
#   OUT=/some/dir bash results/h100-measurement/run.sh
set -euo pipefail
OUT=${OUT:-results/runs/h100}
M=fixed,fixed:steps=24,threshold,threshold:tau=0.7,threshold:factor=1.0
common="--model tiny --task arith --limit 1024 --batch-size 32 --seed 0 --methods $M --out-dir $OUT/runs --no-progress"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,power.limit,power.draw,temperature.gpu --format=csv
python run_bench.py $common --run-id rep1                                  # repeat 1
python run_bench.py $common --run-id rep2                                  # repeat 2
python run_bench.py $common --run-id split --time-forwards true            # latency split (instrumented)
DLLM_BENCH_ENERGY=power python run_bench.py $common --run-id power         # fallback meter, cross-check
# crash and resume: kill -9 a run mid-way, resume it, compare with rep1
timeout -s KILL 12 python run_bench.py $common --run-id crash || echo "killed (exit $?)"
wc -l < $OUT/runs/crash/requests.jsonl || true
python run_bench.py $common --run-id crash --resume
python run_bench.py report $OUT/runs/rep1 $OUT/runs/rep2 $OUT/runs/split $OUT/runs/power $OUT/runs/crash \
  --baseline fixed --out $OUT/report
