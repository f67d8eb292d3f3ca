#!/usr/bin/env bash
# The H200 energy measurement of issue 4 (REPORT.md beside this file), run from the repo root:
#   OUT=/some/dir bash results/h200-measurement/run.sh
set -euo pipefail
OUT=${OUT:-results/runs/h200}
M=fixed,threshold,prr,slowfast,localleap,eb
c="--model tiny --task arith --limit 1024 --seed 0 --methods $M --out-dir $OUT/runs --no-progress"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,utilization.gpu,temperature.gpu --format=csv,noheader -lms 200 > $OUT/nvidia-smi.csv &
for r in b32-rep1 b32-rep2; do python run_bench.py $c --batch-size 32 --run-id $r; done
for r in b256-rep1 b256-rep2; do python run_bench.py $c --batch-size 256 --run-id $r; done
python run_bench.py $c --batch-size 32 --run-id b32-split --time-forwards true
kill %1
