#!/bin/bash
# The captured step's decide compiled (acceleration/compiled_step.py) or plain: switch_ab.sh with
# DLLM_COMPILE_STEP ($OUT/on_* compiled, $OUT/off_* plain).
#   bash experiments/speed/compiled_step_ab.sh "<method specs separated by ;>" [batches] [extra bench args]
exec bash "$(dirname "$0")/switch_ab.sh" DLLM_COMPILE_STEP "$@"
