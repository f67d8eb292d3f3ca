#!/bin/bash
# LLaDA2.0-mini's block step at batch 8 with the packed block attention against the same tree without
# it (.old: PACKED_FROM_BATCH = None in kernels/block_attention.py), then a block step's matrix products
# at M = 256 (Fast-dLLM v2 7B at batch 8): cuBLAS, cuBLASLt, Inductor's max-autotune, and the gate/up
# product with its SwiGLU as one Triton kernel. One call of ~6 min:
#   rm -rf .old && mkdir .old && git archive HEAD kernels models decoding acceleration bench tasks \
#     training run_bench.py | tar -x -C .old && \
#   sed -i 's/^PACKED_FROM_BATCH = 8 /PACKED_FROM_BATCH = None /' .old/kernels/block_attention.py  # carry .old:
#   bash experiments/speed/pending_gpu_next.sh
set -u
source experiments/speed/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader
grep -q "^PACKED_FROM_BATCH = None" .old/kernels/block_attention.py || { echo ".old must have PACKED_FROM_BATCH = None"; exit 1; }
block_ab llada2-mini 120 8; cp /tmp/old_llada2-mini_b8.txt /tmp/new_llada2-mini_b8.txt "$OUT/"
timeout 200 python experiments/speed/block_gemm_probe.py --M 256 2>&1 | quiet | tee "$OUT/gemm_probe_fdv2_m256.txt"
