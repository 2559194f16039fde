#!/usr/bin/env bash
# A recipe's default model on all patients on a CPU, resumable where DIR survives (issue 11).
#
# Why: a candidate whose folds pass its ship rule is then trained on all three patients with the recipe's own seed
# and epochs, as `gpu_training_round.sh default` does on a lent GPU in about 9 minutes. Without a GPU the same
# training takes about 2.5 hours on 2 cores: 84 epochs of 100 steps; v10's default (the bundled one since 28 Nov
# 2026) was trained with this script on a 2-core AMD EPYC in 2 h 37 min of training (99.6-132 s per epoch, bf16
# autocast, 1 loader worker; stops 78-79, resumed once). That is longer than what is left of most sessions after
# their other work: each run
# continues from the last per-epoch (and every-500-step) checkpoint, and stops gracefully with a
# checkpoint after MINUTES. A new session may get a new machine with an empty /tmp; then the run starts over.
#
#   RECIPE=scripts/default_model_v7.yaml DIR=/tmp/v9 MINUTES=110 scripts/cpu_default_round.sh
#
# RECIPE (required): the recipe YAML. DIR: package, log, run folder and cache (/tmp/default). MINUTES: wall-clock
# limit of this run (170). DATA: the cases CSV (.gpudata/cases.csv, set up as gpu_training_round.sh's header says).
# NAME = <recipe>_all: DIR/NAME.safetensors once complete (its log says "(completed)"), DIR/NAME.log.
# ARGS: more train options (a dry run: ARGS="--epochs 1 --iterations-per-epoch 2 --batch-size 2 --patch-size 96
# --warmup 0"). Differences from the GPU's default: the device's arithmetic and the loader's random stream (1 worker,
# not 12).
set -u
# One { } block, read before it runs, as cpu_fold_round.sh (an edit under a run of hours must not change what runs).
{
RECIPE=${RECIPE:?set RECIPE (the recipe YAML to train)}
DIR=${DIR:-/tmp/default}; DATA=${DATA:-.gpudata/cases.csv}; MINUTES=${MINUTES:-170}
[ -f "$RECIPE" ] || { echo "no recipe '$RECIPE'" >&2; exit 2; }
[ -f "$DATA" ] || { echo "no cases CSV '$DATA' (see scripts/gpu_training_round.sh's header)" >&2; exit 2; }
mkdir -p "$DIR"
name="$(basename "$RECIPE" .yaml)_all"; log="$DIR/$name.log"
if [ -f "$DIR/$name.safetensors" ] && grep -q "(completed)" "$log" 2>/dev/null; then echo "$name: done before"; exit 0; fi
resume=()
if [ -f "$DIR/$name/checkpoints/last.pt" ]; then resume=(--resume); echo "$name: resumed at $(date -u +%H:%M)"
else echo "$name: started at $(date -u +%H:%M)"; fi
# the log is appended to: a resumed run keeps its earlier epochs' lines
python3 -m LiverTumorSegLib train --config "$RECIPE" --data "$DATA" --device cpu --amp bf16 --no-tensorboard \
    --no-progress --overwrite --name "$name" --val-fraction 0 --num-workers 1 --checkpoint-every-steps 500 \
    --max-time-minutes "$MINUTES" "${resume[@]}" ${ARGS:-} -o "$DIR/$name.safetensors" --log-dir "$DIR/$name" \
    --cache-dir "$DIR/cache_all" >>"$log" 2>&1
echo "$name: rc $?; $(tail -n 1 "$log")"
exit 0
}
