#!/usr/bin/env bash
# Train a default-model candidate on the CPU (resumable), then read it against the shipped default, as the ship
# rules in docs/default_model_v*.md read a default: the sample's liver Dice, then benchmarks/robustness.py at seeds
# 0, 1, 2 with both packages in each run, then benchmarks/robustness_compare.py.
#
#   scripts/train_and_read_default_cpu.sh RECIPE CASES_CSV SHARED_DATA OUT_DIR
#
#   RECIPE       the recipe YAML (e.g. scripts/default_model_v6.yaml); its own seed, epochs and batch are used
#   CASES_CSV    image,label,patient of the training patients (the team's three: see scripts/gpu_training_round.sh)
#   SHARED_DATA  the folder robustness.py reads (../shared/data)
#   OUT_DIR      OUT_DIR/candidate.safetensors (fp32), OUT_DIR/train/ (log, checkpoints), OUT_DIR/train.log,
#                OUT_DIR/sample.txt, OUT_DIR/rob_seed{0,1,2}.json, OUT_DIR/compare.txt and compare.json
#
# Run it again after a stop: training continues from OUT_DIR/train/checkpoints/last.pt (a checkpoint every 500
# steps), and every finished step is skipped. On 2 CPU cores with bf16 (v6's recipe, 8,400 steps): about 2.5 h on
# an AMD EPYC, about 1.9 h on an Intel Xeon with AMX; the reading about 20 min more.
# DRY_RUN=1 prints the commands instead of running them. PYTHON (python3) runs them.
set -euo pipefail
if [ $# -ne 4 ]; then
    echo "usage: scripts/train_and_read_default_cpu.sh RECIPE CASES_CSV SHARED_DATA OUT_DIR" >&2
    exit 2
fi
recipe=$1; cases=$2; shared=$3; out=$4
for f in "$recipe" "$cases"; do
    [ -f "$f" ] || { echo "no such file: $f" >&2; exit 2; }
done
[ -d "$shared" ] || { echo "no such folder: $shared (the team's cases, as ../shared/data)" >&2; exit 2; }
py=${PYTHON:-python3}
run() {  # run LOGFILE CMD...: the command, its output appended to LOGFILE (or printed under DRY_RUN)
    local log=$1; shift
    if [ -n "${DRY_RUN:-}" ]; then echo "$* >> $log"; else "$@" >> "$log" 2>&1; fi
}
mkdir -p "$out"
pkg=$out/candidate.safetensors
if [ ! -f "$pkg" ]; then
    resume=()
    [ -f "$out/train/checkpoints/last.pt" ] && resume=(--resume)
    run "$out/train.log" "$py" -m LiverTumorSegLib train --config "$recipe" --data "$cases" --val-fraction 0 \
        --device cpu --amp bf16 --num-workers 1 --checkpoint-every-steps 500 --no-tensorboard --no-progress \
        --overwrite "${resume[@]}" --name "$(basename "$recipe" .yaml)" -o "$pkg" --log-dir "$out/train" \
        || { echo "training failed: see $out/train.log (run this again to resume)" >&2; exit 1; }
fi
[ -n "${DRY_RUN:-}" ] || [ -f "$pkg" ] || { echo "training ended without $pkg: see $out/train.log" >&2; exit 1; }
if [ ! -s "$out/sample.txt" ]; then  # written under another name first: a failed run is not taken as done
    rm -f "$out/sample.part"
    run "$out/sample.part" "$py" -m LiverTumorSegLib segment --sample --model "$pkg" -o "$out/sample_seg.nii.gz" \
        --report "$out/sample_report.json" --overwrite \
        || { echo "the sample failed: see $out/sample.part" >&2; exit 1; }
    [ -n "${DRY_RUN:-}" ] || mv "$out/sample.part" "$out/sample.txt"
fi
for seed in 0 1 2; do
    [ -f "$out/rob_seed$seed.json" ] && continue
    run "$out/robustness.log" "$py" benchmarks/robustness.py default "$pkg" --data "$shared" --max-slices 40 \
        --precision fp32 --seed "$seed" --json "$out/rob_seed$seed.json"
done
[ -n "${DRY_RUN:-}" ] || : > "$out/compare.txt"
run "$out/compare.txt" "$py" benchmarks/robustness_compare.py "$out"/rob_seed{0,1,2}.json --base default \
    --candidate candidate.safetensors --out "$out/compare.json"
[ -n "${DRY_RUN:-}" ] || { cat "$out/sample.txt"; cat "$out/compare.txt"; }
