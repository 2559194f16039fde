#!/usr/bin/env bash
# Train the bundled default model and its leave-one-patient-out validation folds.
#
#   scripts/train_default_model.sh DATA_DIR OUT_DIR [MAX_MINUTES]
#
# DATA_DIR holds the team's real cases (totalsegmentator_examples/ and dcmqi_ct3slice/ as in shared/data).
# Runs the 3 folds and the final model (all 3 patients, no hold-out) concurrently, e.g. on one GPU.
# Writes OUT_DIR/cases.csv, OUT_DIR/fold{0,1,2}.safetensors, OUT_DIR/default.safetensors and logs.
set -euo pipefail
if [ $# -lt 2 ] || [ ! -d "$1" ]; then
    echo "usage: scripts/train_default_model.sh DATA_DIR OUT_DIR [MAX_MINUTES]  (DATA_DIR: a folder of the cases)" >&2
    exit 2
fi
case "${3:-8}" in
    ''|*[!0-9.]*) echo "MAX_MINUTES must be a number of minutes, got '${3}'" >&2; exit 2 ;;
esac
data=$(cd "$1" && pwd); out=$2; minutes=${3:-8}
logs=${LOGS:-$out/logs}   # checkpoints, caches, CSV/TensorBoard logs, curves
mkdir -p "$out" "$logs"
cat > "$out/cases.csv" <<CSV
image,label,patient
$data/totalsegmentator_examples/example_ct_dicom20.nii.gz,$data/totalsegmentator_examples/example_ct_dicom20_liver.nii.gz,ts_dicom20
$data/totalsegmentator_examples/example_ct_full112.nii.gz,$data/totalsegmentator_examples/example_ct_full112_liver_tsv1.nii.gz,ts_full112
$data/dcmqi_ct3slice/ct3slice_ct.nii.gz,$data/dcmqi_ct3slice/ct3slice_liver_seg.nii.gz,dcmqi_ct3slice
CSV
cfg=$(dirname "$0")/default_model.yaml
py=${PYTHON:-python3}
pids=()
for fold in 0 1 2; do
  $py -m LiverTumorSegLib train --no-progress-bar --config "$cfg" --data "$out/cases.csv" --folds 3 --fold $fold \
      --epochs 25 --num-workers 3 --log-dir "$logs/fold$fold" --max-time-minutes "$minutes" -o "$out/fold$fold.safetensors" --overwrite > "$out/fold$fold.log" 2>&1 &
  pids+=($!)
done
$py -m LiverTumorSegLib train --no-progress-bar --config "$cfg" --data "$out/cases.csv" --val-fraction 0 \
    --log-dir "$logs/final" --max-time-minutes "$minutes" -o "$out/default.safetensors" --overwrite > "$out/final.log" 2>&1 &
pids+=($!)
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
tail -n 3 "$out"/*.log
exit $status
