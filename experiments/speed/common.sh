# Shell pieces the device scripts share (source experiments/speed/common.sh from the repository root).

# The probes' output without compiler warnings.
quiet() { grep -v "Warn\|warn\|^ *$\|Online softmax\|split the\|important use\|^softmax"; }

# A PRR controller with random weights for LLaDA-8B's width, at /tmp/random-controller (speed only).
random_controller() {
  python - <<'PY'
import torch
from decoding.methods.prr.controller import Controller, ControllerConfig, save_controller
torch.manual_seed(0)
save_controller(Controller(ControllerConfig(d_model=4096)), "/tmp/random-controller", {"note": "random weights, speed only"})
PY
}

# ab NAME BATCH "SPECS" SECONDS: bench_speed on LLaDA-8B (prompt 512, gen 256, block 32, half the
# masked positions confident) of the old tree (.old) and this one, one after the other; files in $OUT.
ab() {
  local args="--config llada-8b --prompt 512 --gen 256 --block 32 --batch $2 --confident-share 0.5"
  (cd .old && timeout $4 python -m bench.bench_speed $args --methods "$3" --out "$OUT/$1_old.json") > "$OUT/$1_old.txt" 2>&1
  timeout $4 python -m bench.bench_speed $args --methods "$3" --out "$OUT/$1_new.json" > "$OUT/$1_new.txt" 2>&1
  grep -h "decode\|window step\|Error" "$OUT/$1_old.txt" | sed "s/^/$1 old /"
  grep -h "decode\|window step\|Error" "$OUT/$1_new.txt" | sed "s/^/$1 new /"
}

# block_ab CONFIG [SECONDS] [BATCH]: bench_speed's block decode (prompt 512, gen 256, threshold; batch 1
# unless BATCH) of the old tree (.old), then this one; JSON in $OUT/{old,new}_CONFIG[_bBATCH].json, text
# in /tmp, the lines that matter.
block_ab() {
  local c=$1 b=${3:-1} tree dir name
  name=$c; [ "$b" != 1 ] && name=${c}_b$b
  for tree in old new; do
    dir=.; [ $tree = old ] && dir=.old
    (cd $dir && timeout "${2:-150}" python -m bench.bench_speed --config "$c" --prompt 512 --gen 256 --batch "$b" \
       --methods threshold --out "$OUT/${tree}_$name.json") > "/tmp/${tree}_$name.txt" 2>&1
    grep -h "decode threshold:\|blocks it fed\|step_own_block (\|Error\|not used" "/tmp/${tree}_$name.txt" | sed "s/^/$tree $name /"
  done
}

# tree_run NAME DIR CONFIG BATCH [ENV=VALUE]: bench_speed's block decode (prompt 512, gen 256, threshold)
# of the tree in DIR (. or a copy such as .old/.new, its models/tiny* linked to this tree's); JSON and
# text in $OUT/NAME_CONFIG_bBATCH.*, the lines that matter.
tree_run() {
  local f="$OUT/$1_$3_b$4"
  for m in tiny tiny-cdlm; do [ "$2" = . ] || ln -sfn "../../models/$m" "$2/models/$m"; done
  (cd "$2" && env ${5:-X=1} timeout 150 python -m bench.bench_speed --config "$3" --prompt 512 --gen 256 \
     --batch "$4" --methods threshold --out "$f.json") > "$f.txt" 2>&1
  grep -h "decode threshold:\|blocks it fed\|step_own_block (\|Error\|not used" "$f.txt" | sed "s/^/$1 $3 b$4 /"
}
