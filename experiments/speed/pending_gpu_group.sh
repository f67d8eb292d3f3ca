#!/bin/bash
# Three changes against the tree before them (.old), one device call (about 9 min): the MoE grouping
# kernel with a program per 64 pairs (kernels/moe_group.py), LLaDA2.x's shared expert run by the
# expert kernels with the routed ones (models/moe.py experts_with_shared_row; new_experts0 is the new
# tree with DLLM_TRITON_EXPERTS=0, which runs neither), and the block step after an append graph
# queued ahead (CapturedBlockDecode.next_kind; Fast-dLLM v2 appends every block). Also klass's
# KL kernels with the barrier between the ring's reads and writes (kernels/klass_kl.py), three
# tiles, 2048 x 8 the one that gave a wrong KL without it. The MoE kernels'
# probe (the grouping at 256 and 2048 pairs under a CUDA graph, equal to the reference; the expert
# products of blocks routed among 27 and 8 experts by tile), the fast
# path against the reference loop on llada2-mini and fast-dllm-v2-7b, and bench_speed's block step
# and decode at batch 1 on both, old then new.
#   rm -rf .old && mkdir .old && git archive 723e1d1 kernels models decoding acceleration bench tasks \
#     training run_bench.py | tar -x -C .old       # then carry .old:
#   bash experiments/speed/pending_gpu_group.sh
# $OUT gets the probes, the parity checks and the bench_speed JSON (8 files); stdout the lines that matter.
set -u
source experiments/speed/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 150 python experiments/speed/moe_kernels_probe.py > "$OUT/probe.txt" 2>&1
grep -o "^[0-9]* tokens: .*group, kernel [0-9.]* us\|^32 tokens over.*" "$OUT/probe.txt"
timeout 90 python experiments/speed/klass_kl_probe.py --tiles 512x2,1024x4,2048x8 > "$OUT/klass_kl_probe.txt" 2>&1
grep "rows:\|Error" "$OUT/klass_kl_probe.txt"
for c in llada2-mini fast-dllm-v2-7b; do
  timeout 120 python experiments/gpu_checks/fast_vs_reference.py --config $c --batch 4 --prompt 256 --gen 64 \
    > "$OUT/fast_vs_reference_$c.txt" 2>&1
  grep "ALL EQUAL\|DIFF\|Error\|not used" "$OUT/fast_vs_reference_$c.txt" | sed "s/^/$c /"
done
for c in llada2-mini fast-dllm-v2-7b; do block_ab $c; done
DLLM_TRITON_EXPERTS=0 timeout 150 python -m bench.bench_speed --config llada2-mini --prompt 512 --gen 256 --batch 1 \
  --methods threshold --out /tmp/new_experts0.json > /tmp/new_experts0.txt 2>&1
grep -h "decode threshold:\|blocks it fed\|step_own_block (\|Error" /tmp/new_experts0.txt | sed "s/^/new_experts0 /"
# If the call has time left (else a call of its own): LLaDA2.0-mini's copies and indexed writes by caller.
timeout 60 python experiments/speed/moe_step_probe.py --batch 1 --stacks 2>&1 | grep -A40 "by caller"
