#!/usr/bin/env bash
# CDLM on the built-in model, one GPU (docs/cdlm.md): train the student, then compare it with the
# teacher on 500 arith test problems. Run from the repo root:
#
#   OUT=/some/dir bash experiments/cdlm_gpu.sh
#
# Writes to $OUT:
#   tiny-cdlm/          the student (model.safetensors, config.json with the training record:
#                       command, seed, steps, time, device; training.json; train_log.txt)
#   train_log.txt       the trainer's console output
#   cdlm_compare.md     accuracy, NFE and latency table (experiments/cdlm_compare.py)
#   cdlm_compare.json   the same rows with settings and machine
#   runs/               run_bench.py run directories: the student (`--model $OUT/tiny-cdlm`) and the
#                       teacher, threshold on 500 problems, float32 (the harness's own record)
#   env.txt             GPU, driver, torch
# Needs torch, transformers, tabulate, pandas; no network, no lm-eval (the task is built in).
#
# CDLM_TOY=1 CDLM_DEVICE=cpu shrinks every size (8 training problems, 1 epoch, 10 compared
# problems) to check the whole script on a CPU in a few minutes.
set -euo pipefail
OUT=${OUT:?set OUT to the output folder}
DEVICE=${CDLM_DEVICE:-cuda}
mkdir -p "$OUT/tiny-cdlm"
export PYTHONUNBUFFERED=1

if [[ "${CDLM_TOY:-0}" == 1 ]]; then
  TRAIN="--train-problems 8 --heldout-problems 8 --epochs 1 --batch-size 8 --rollout-batch 8 --decode-batch 8 --max-minutes 5"
  COMPARE="--limit 10 --batch 5 --latency-problems 2"
  LIMIT=4
else
  # 8000 rollouts (4000 problems x 2 temperatures) x 4 pairs / 64 = 500 steps per epoch, 10 epochs;
  # --max-minutes 4 stops earlier (after a whole epoch, keeping the best) if the GPU is slower than
  # estimated, so the whole script stays under about 6 minutes.
  TRAIN="--train-problems 4000 --heldout-problems 500 --epochs 10 --batch-size 64 --rollout-batch 500 --decode-batch 500 --max-minutes 4"
  COMPARE="--limit 500 --batch 50 --latency-problems 50"
  LIMIT=500
fi

{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || echo "no nvidia-smi"
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

python -m training.cdlm_train --out "$OUT/tiny-cdlm" $TRAIN --rollout-temperatures 0.0,0.5 \
  --pairs-per-trajectory 4 --lr 3e-4 --seed 0 --data-seed 0 --device "$DEVICE" 2>&1 | tee "$OUT/train_log.txt"
cp "$OUT/train_log.txt" "$OUT/tiny-cdlm/train_log.txt"

python -m experiments.cdlm_compare --student "$OUT/tiny-cdlm" $COMPARE --device "$DEVICE" \
  --json "$OUT/cdlm_compare.json" | tee "$OUT/cdlm_compare.md"

# the harness's own record (run.json, requests.jsonl, summary.json): the student as --model <dir>
common="--task arith --limit $LIMIT --batch-size 50 --seed 0 --device $DEVICE --dtype float32 --out-dir $OUT/runs --no-progress"
python run_bench.py --model "$OUT/tiny-cdlm" --methods threshold $common --run-id student \
  || echo "run_bench student run failed (exit $?)"
python run_bench.py --model tiny --methods fixed,threshold,threshold:cache=dual $common --run-id teacher \
  || echo "run_bench teacher run failed (exit $?)"
echo "done: $OUT"
