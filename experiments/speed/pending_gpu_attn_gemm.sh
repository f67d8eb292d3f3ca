#!/bin/bash
# The block step's attention with a kv head's q heads packed in one program (a sweep of its launch
# settings against the per-head kernel as it serves), then the block step's matrix products at
# M = 256 (Fast-dLLM v2 7B and SDAR-8B at batch 8): cuBLAS, cuBLASLt, Inductor's max-autotune.
#   bash experiments/speed/pending_gpu_attn_gemm.sh      # ~5 min
set -u
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 200 python experiments/speed/block_attention_batch_probe.py --packed 2>&1 | grep -v Warning | tee "$OUT/attn_packed_probe.txt"
timeout 300 python experiments/speed/block_gemm_probe.py --M 256 2>&1 | grep -v "Warning\|warn" | tail -14 | tee "$OUT/gemm_probe_fdv2_m256.txt"
