#!/usr/bin/env bash
# Leave-one-patient-out folds of a recipe on a CPU, one after another, resumable where DIR survives (issue 11).
#
# Why: a candidate default model is read on its three folds at two training seeds (docs/fold_clause_noise.md) before
# it is trained on all patients. On a lent GPU the six folds take about 13 minutes (gpu_training_round.sh folds); a
# session without one can still train them here, 48-50 minutes per fold on 2 cores (bf16 autocast, 1 loader worker:
# 108 s per 100-step epoch for v7's recipe, 27 epochs; stop 74). A fold the session's end cuts off continues from its
# per-epoch checkpoint the next time this script runs with the same DIR, where DIR survived: a new session may get a
# new machine with an empty /tmp (stop 75 did: stop 74's /tmp/v9 was gone), so plan folds that end within the
# session and write each fold's numbers down (scripts/evaluate_folds.py) before it ends.
#
#   RECIPE=scripts/default_model_v7.yaml FOLD_SEEDS="11 13" DIR=/tmp/v9 MINUTES=150 scripts/cpu_fold_round.sh
#
# RECIPE (required): the recipe YAML. FOLD_SEEDS: training seeds ("11"), FOLDS: which folds ("0 1 2"), split seed
# 2027 always (v3's held-out patients). DIR: where packages, logs, run folders and caches go (/tmp/folds). MINUTES: stop
# starting or continuing folds after this many minutes (the running fold stops gracefully with a checkpoint; default
# 170). DATA: the cases CSV (.gpudata/cases.csv, set up as gpu_training_round.sh's header says). Each fold is
# NAME = <recipe>_s<seed>_fold<k>: DIR/NAME.safetensors once complete (its log says "(completed)"), DIR/NAME.log.
# FOLD_EPOCHS: 100-step epochs per fold (27, v3's folds). FOLD_ARGS: more train options (a dry run: FOLD_EPOCHS=1
# FOLD_ARGS="--iterations-per-epoch 2 --batch-size 2 --patch-size 96 --warmup 0").
# Then: python scripts/evaluate_folds.py --cases DATA DIR/NAME_fold0.safetensors ..._fold1 ..._fold2, per seed.
set -u
# The whole body is one { } block, read before it runs: bash reads a script as it goes, so a file changed under a
# round of hours (an edit, a git checkout or pull) ran the changed bytes from the old offset (stop 75: 'kers: command
# not found' after a fold).
{
RECIPE=${RECIPE:?set RECIPE (the recipe YAML to train)}
DIR=${DIR:-/tmp/folds}; DATA=${DATA:-.gpudata/cases.csv}
FOLD_SEEDS=${FOLD_SEEDS:-11}; FOLDS=${FOLDS:-0 1 2}; MINUTES=${MINUTES:-170}; E=${FOLD_EPOCHS:-27}
[ -f "$RECIPE" ] || { echo "no recipe '$RECIPE'" >&2; exit 2; }
[ -f "$DATA" ] || { echo "no cases CSV '$DATA' (see scripts/gpu_training_round.sh's header)" >&2; exit 2; }
mkdir -p "$DIR"
T0=$(date +%s)
left_minutes() { python3 -c "print(round($MINUTES - ($(date +%s) - $T0) / 60, 1))"; }
TAG=$(basename "$RECIPE" .yaml)
for seed in $FOLD_SEEDS; do
    for k in $FOLDS; do
        name="${TAG}_s${seed}_fold$k"; log="$DIR/$name.log"
        if [ -f "$DIR/$name.safetensors" ] && grep -q "(completed)" "$log" 2>/dev/null; then
            echo "$name: done before"; continue
        fi
        left=$(left_minutes)
        if python3 -c "import sys; sys.exit(0 if $left < 5 else 1)"; then echo "$name: not started ($left min left)"; continue; fi
        resume=()
        if [ -f "$DIR/$name/checkpoints/last.pt" ]; then resume=(--resume); echo "$name: resumed, $left min left"
        else echo "$name: started, $left min left"; fi
        # the log is appended to: a resumed fold keeps its earlier epochs' lines
        python3 -m LiverTumorSegLib train --config "$RECIPE" --data "$DATA" --device cpu --amp bf16 --no-tensorboard \
            --no-progress --overwrite --name "$name" --seed "$seed" --split-seed 2027 --folds 3 --fold "$k" \
            --epochs "$E" --val-every "$E" --num-workers 1 --max-time-minutes "$left" "${resume[@]}" ${FOLD_ARGS:-} \
            -o "$DIR/$name.safetensors" --log-dir "$DIR/$name" --cache-dir "$DIR/cache_${seed}_fold$k" >>"$log" 2>&1
        echo "$name: rc $?; $(tail -n 1 "$log")"
    done
done
exit 0
}
