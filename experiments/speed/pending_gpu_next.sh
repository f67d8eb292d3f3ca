#!/bin/bash
# The next device call: branch pending-gpu (the grouping kernel in chunks of 16 pairs above 512 pairs,
# the packed block attention writing its own output when one chunk holds every key) against main, at
# batch 8 on LLaDA2.0-mini and Fast-dLLM v2 7B, then the fast path on it (~5 min). Build the trees:
#   T="kernels models decoding acceleration bench tasks training run_bench.py experiments/gpu_checks"
#   rm -rf .old .new && mkdir .old .new && git archive main $T | tar -x -C .old --exclude='models/tiny' \
#     --exclude='models/tiny-cdlm' && git archive pending-gpu $T | tar -x -C .new --exclude='models/tiny' \
#     --exclude='models/tiny-cdlm'
#   bash experiments/speed/pending_gpu_next.sh
exec bash experiments/speed/group_attention_ab.sh
