#!/bin/bash
# The next device call: pending_gpu_next.patch (the grouping kernel in chunks of 16 pairs above 512
# pairs; the packed block attention writing its own output when one chunk holds every key), not on
# main until measured, against main at batch 8 on LLaDA2.0-mini and Fast-dLLM v2 7B, then the fast
# path on it (~5 min). Build the trees here first (.old: this tree; .new: it with the patch; both
# without models/tiny*, the 64 MiB a call carries), then run this script on the device:
#   bash experiments/speed/pending_gpu_next.sh build
#   bash experiments/speed/pending_gpu_next.sh
set -eu
if [ "${1:-}" = build ]; then
  T="kernels models decoding acceleration bench tasks training run_bench.py experiments/gpu_checks"
  rm -rf .old .new && mkdir .old .new
  for t in .old .new; do git archive HEAD $T | tar -x -C $t --exclude='models/tiny' --exclude='models/tiny-cdlm'; done
  git apply --directory=.new --include='.new/kernels/*' experiments/speed/pending_gpu_next.patch
  grep -q CHUNK_MANY .new/kernels/moe_group.py && echo "built .old (HEAD) and .new (HEAD + patch)"
  exit 0
fi
set +e
exec bash experiments/speed/group_attention_ab.sh
