#!/bin/bash
# What waits for the GPU, in one device call (carry .old: a `git archive` of the tree before the
# changes measured, e63bf44), most important first, each part under its own timeout (about 10 min
# in all; the last parts may be cut):
# 1. PRR on a kept captured decode: three calls of one Decoder give the same tokens (the
#    controller's module rebound);
# 2. ways to take PRR's top-50 (top50_probe.py: whole-row topk, tiles, chunks);
# 3. old and new at batch 1 without a cache: threshold, prr (top-50 from chunks), klass (the fused
#    KL rows function);
# 4. old and new at batch 8 with the dual cache: klass, prr.
# The block-causal models' part is experiments/speed/pending_gpu_block.sh, a call of its own.
#   rm -rf .old && mkdir .old && git archive e63bf44 kernels models decoding acceleration bench tasks training run_bench.py | tar -x -C .old
#   bash experiments/speed/pending_gpu.sh      # $OUT gets the 8 bench_speed files; the rest is on stdout
set -u
source experiments/speed/common.sh
nvidia-smi --query-gpu=name,power.limit --format=csv,noheader
random_controller
C=/tmp/random-controller
timeout 80 python experiments/gpu_checks/repeat_steps.py --spec "prr:controller=$C,cache=dual" --batch 8 --reps 3 \
  2>&1 | grep "per call\|Error"
timeout 45 python experiments/speed/top50_probe.py 2>&1 | grep "us \|Error"
ab b1 1 "threshold;prr:controller=$C;klass" 110
ab dual_b8 8 "klass:cache=dual;prr:controller=$C,cache=dual" 110
