#!/bin/bash
# The merged dual-cache step holding only the blocks' logits rows (acceleration/captured.py,
# merge_window_logits) against the tree before it (.old, with experiments/), in two calls of about 5 min:
#   rm -rf .old && mkdir .old && git archive 6b12f7c kernels models decoding acceleration bench tasks \
#     training experiments run_bench.py | tar -x -C .old       # then carry .old:
#   bash experiments/speed/pending_gpu_mixed_merge.sh tokens
#   bash experiments/speed/pending_gpu_mixed_merge.sh speed
#   bash experiments/speed/pending_gpu_mixed_merge.sh check   # both in one call (shorter limits)
# tokens: the fast path of both trees on LLaDA-8B with the dual cache (batch 4, gen 64): its tokens and NFE
#    per method saved, then compared tree against tree (the merge must change no token), and each
#    against the reference loop;
# speed: forward_share.py at batch 8 with the dual cache, old then new: the step time outside the forwards.
set -u
source experiments/speed/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader
random_controller > /dev/null 2>&1
mode=$1 limit=200
case "$mode" in tokens|speed|check) ;; *) echo "tokens, speed or check" >&2; exit 2 ;; esac
[ "$mode" = check ] && limit=145
case "$mode" in
tokens|check)
cp experiments/gpu_checks/fast_vs_reference.py .old/experiments/gpu_checks/   # --save, on the old tree's modules
for tree in old new; do
  dir=.; [ $tree = old ] && dir=.old
  (cd $dir && timeout $limit python experiments/gpu_checks/fast_vs_reference.py --config llada-8b --batch 4 --gen 64 \
     --only cache=dual --save /tmp/fast_$tree.pt) > "$OUT/fast_vs_reference_dual_$tree.txt" 2>&1
  grep -h "rows equal\|ALL EQUAL\|DIFFERENCES\|Error" "$OUT/fast_vs_reference_dual_$tree.txt" | sed "s/^/$tree /"
done
python - <<'PY' | tee "$OUT/old_vs_new_tokens.txt"
import re
import torch
key = lambda spec: re.sub(r"controller=[^,]*", "controller=random", spec)   # each tree writes its own controller path
old, new = ({key(s): v for s, v in torch.load(f).items()} for f in ("/tmp/fast_old.pt", "/tmp/fast_new.pt"))
for spec in old:
    same = (old[spec]["tokens"] == new[spec]["tokens"]).all(1) & (old[spec]["nfe"] == new[spec]["nfe"])
    print(f"old against new, {spec}: {int(same.sum())}/{len(same)} rows equal (tokens, NFE)")
PY
;;&
speed|check)
p=prr:controller=/tmp/random-controller
specs="threshold:cache=dual;$p,cache=dual;klass:cache=dual;eb:cache=dual;dico:cache=dual"
for tree in old new; do
  dir=.; [ $tree = old ] && dir=.old
  (cd $dir && timeout $limit python experiments/speed/forward_share.py --batch 8 --methods "$specs") \
    > "$OUT/forward_share_b8_$tree.txt" 2>&1
  grep -h "loop overhead\|Error" "$OUT/forward_share_b8_$tree.txt" | sed "s/^/$tree /"
done
;;
esac
