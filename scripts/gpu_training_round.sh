#!/usr/bin/env bash
# One GPU training round of issue 11 on a single lent GPU machine (16 cores, one H100), in two phases of
# under 10 minutes each (the device tool's per-command limit). Not used by tests or CI.
#
#   phase1: probe the default v2 recipe's speed (also a CUDA smoke test), then start in the background
#           (setsid) the default v2 (24-384 U-Net, ~17 min) and, in the foreground, one package per other
#           architecture family (SegNet, ResNet-18-FCN, AlexNet-FCN, Attention U-Net; same recipe, ~7 min
#           each, widths reduced so that each package is <= 20 MB). Writes the family packages to $OUT.
#   phase2: leave-one-patient-out folds of the default recipe (3 patients -> 3 folds, ~7 min each) while
#           the default finishes (or, if the machine was lost between phases, trains it again, shorter);
#           then a GPU timing of `segment` on a 500-slice CT; writes the default and fold packages to $OUT.
#
#   phase3: `segment` on CUDA timed on a real 512 x 512 CT stacked to 500 slices (.gpudata/default_v2.safetensors),
#           then the leave-one-patient-out folds again, longer (5 workers each, ~6 min).
#   phase4: the five architecture families at an equal budget (900 steps, 3 workers each) on leave-one-
#           patient-out fold 0 of the recipe's split; each log ends with the held-out patient's Dice.
#   lopo_families: phase4 on every leave-one-patient-out fold (issue 11's table for the families): the five families
#           (the default's 24-384 U-Net and the shipped widths) x 3 folds, all 15 at once, LOPO_EPOCHS (6) x
#           LOPO_ITERATIONS (100) steps each with LOPO_WORKERS (1) loader worker, stopped after LOPO_MINUTES (6.5) if
#           not done; each log (lopo_<architecture>_f<fold>.log, to $OUT) ends with the held-out patient's whole-CT
#           Dice; $OUT/lopo_families.json has every run's numbers. LOPO_FOLDS ("0 1 2"), LOPO_ARCHS (all five),
#           LOPO_SEED (2027, the recipe's), LOPO_BATCH (16), LOPO_PATCH (192), LOPO_DEADLINE (530: seconds after the
#           script's start when it stops waiting; runs still going are left running). A CPU dry run: DEVICE=cpu LOPO_EPOCHS=1
#           LOPO_ITERATIONS=2 LOPO_FOLDS=2 LOPO_BATCH=2 LOPO_PATCH=96 (about 3 min on 2 cores).
#   speed:  issue 13 with the bundled default, no training (about 4 min): `segment` on a 512 x 512 x 500 CT in a
#           fresh process three times (stages and the model load's parts) and once after loading the model
#           (read alone); a batch of 5 x 100-slice CTs against 5 x (read + network + write) + one model load;
#           the cost of each further 500-slice CT in a batch. DEVICE=cpu SLICES=40 BATCH_SLICES=20 tries it on a CPU.
#           The CTs are example_ct_dicom20's 20 slices in mirrored repetition (liver on every slice: the stages that
#           scale with the liver cost more than on a real CT of that length; report 2.65 s against 1.04-1.19 s on
#           2 CPU cores at 500 slices, docs/speed.md) unless SPEED_CT=upsampled: example_ct_full112 (3 mm,
#           abdomen and pelvis) resampled linearly to 512 x 512 x SLICES.
#   cuda_checks: no training (about 2 min): the CUDA tests CI skips (`pytest -m gpu`), `segment --sample` on CUDA
#           (its liver Dice), and one `segment` of the 500-slice CT (after `speed`, which writes it) under cProfile
#           (main thread; top functions by own and by cumulative time to $OUT/segment_profile.txt).
#   fine_tune: stop 56's new paths on CUDA, no long training (about 2 min on an H200): the CUDA tests and the sample
#           (as cuda_checks), `train --init-from default` for 3 x 100 steps on leave-one-patient-out fold FT_FOLD (2) of
#           the shared cases (each of which trained the default, so the run must warn that its validation patient is
#           not held out), the fine-tuned package's init_from record and its sample Dice, then
#           scripts/heldout_comparison.py (the bundled default, v10 since 28 Nov 2026, and the fine-tuned package, with
#           probability maps and FROC) on the three cases; the fine-tune takes the default's recipe, v10's.
#           DEVICE=cpu FT_EPOCHS=1 FT_ITERATIONS=2 FT_BATCH=2 FT_PATCH=96 FT_WORKERS=0 tries it on a CPU (about 1.5 min).
#   ab:     the working tree against a base (about 3 min, no training): BASE_FILES="SAVED=REPO_PATH ..." names saved
#           copies of library files that make up the base. `segment` of a 512 x 512 x 500 CT in a fresh process,
#           new and base interleaved (AB_PAIRS pairs, 3, after one warm-up each), a batch of 1 and of 3 such CTs
#           for each (the cost of each further CT), the read alone once, then the CUDA tests.
#   levers: issue 11's next lever measured, nothing shipped: the v2 recipe as it is now (with the stop-22 sampler
#           fix the shipped models predate) against v2 + the smooth liver field, each over 3 leave-one-patient-out
#           folds x 2 training seeds (12 trainings of 1,200 steps at once, ~9 min); then levers_eval (next call,
#           ~3 min): benchmarks/compare_recipes.py on the held-out patients, table and JSON to $OUT.
#           LEVER_EPOCHS (100-step epochs, 12), LEVER_SEEDS ("2027 7"), LEVER_AUGMENTATION (the second arm's
#           --augmentation keys), DEVICE (cuda), LEVER_MINUTES (8.5), LEVER_ITERATIONS (steps per epoch, 100),
#           LEVER_EVAL_ARGS (more compare_recipes options). A CPU dry run of both: DEVICE=cpu LEVER_EPOCHS=1
#           LEVER_ITERATIONS=2 LEVER_SEEDS=1 LEVER_EVAL_ARGS="--seeds 0 --perturbations baseline --max-slices 12".
#   v4:     the v4 candidate with RECIPE's own settings (scripts/default_model_v3.yaml unless RECIPE is set): the
#           default (all 3 patients, the recipe's epochs) and its 3 leave-one-patient-out folds (27 epochs each, as
#           v3's folds), all four at once in the background (7 + 3 x 3 loader workers); the call returns after
#           about 9 minutes with their progress. v4_collect (the next call, before the machine goes back) waits for
#           them, writes the four packages to $OUT and runs the CUDA tests.
#   v4_seed: the 3 v4 folds again with another training seed: the folds phase (below) with RECIPE
#           scripts/default_model_v3.yaml and FOLD_SEED 7 unless set (about 8 minutes): the seed spread of the folds.
#   folds:  the three leave-one-patient-out folds of RECIPE (which must be set) with one training seed (FOLD_SEED,
#           2027, the recipe's own; split seed 2027, so v3's held-out patients), 5 loader workers each, nothing beside
#           them (v5's: 447 s on an H100; v7's: 392 and 396 s per seed on an H200, both seeds in one 15-minute
#           session): each finished fold package and its log
#           to $OUT. Folds still running when the call returns (FOLD_SECONDS, 540) go on in the background:
#           folds_collect (the next call, before the machine goes back) waits for them and returns them.
#           FOLD_SEEDS ("2027 7") trains several seeds' folds at once (FOLD_WORKERS each); it did not pay for v8
#           (six at once with 3 workers each: 24-29 s per 100-step epoch against v7's 11-13 s three at a time with
#           5 workers; docs/default_model_v8.md): run the seeds one by one. FOLD_COPY_SEEDS (all of FOLD_SEEDS) says
#           whose packages a call returns (at most 4 of 14.7 MB fit what comes back from one call).
#           FOLD_EPOCHS (27, v3's folds), FOLD_ITERATIONS (the recipe's), DEVICE (cuda). A CPU dry run:
#           DEVICE=cpu FOLD_EPOCHS=1 FOLD_ITERATIONS=2 FOLD_ARGS="--batch-size 2 --patch-size 96" FOLD_WORKERS=0.
#   default: RECIPE's model on all three patients, alone (DEFAULT_WORKERS, 12 loader workers; v5's recipe ran 6.1-7.1
#           s per 100-step epoch on an H100 this way, so its 84 epochs take about 9 minutes), stopped gracefully
#           after DEFAULT_MINUTES (8.5) with a package and a checkpoint: the package (if the run completed) and the
#           checkpoint, split into 15 MB parts (last.pt.partNN; `cat` them back), go to $OUT. RESUME_FROM (a
#           last.pt carried in .gpudata) continues a stopped run (on any device: a CPU resume is the same command
#           with --device cpu --amp bf16 --resume and the checkpoint in LOG_DIR/checkpoints/last.pt).
#   RECIPE (every phase): the recipe YAML, scripts/default_model_v2.yaml unless set. RECIPE=scripts/default_model_v3.yaml
#           with phase1 and phase2 trains a v4 candidate: v3's recipe with the patch sampler fixed on 24 Nov 2026
#           (afa80dd; every shipped model was trained with patches held at the image centre, docs/sampler_lever.md).
#
# Data: .gpudata/cases.csv (the team's 3 shared CT patients, copied into an ignored folder that travels
# with the working tree). Python packages missing on the machine (monai, nibabel) travel as wheels (.whl).
# Setup, once, in the repository root (both folders ignored through .git/info/exclude):
#   printf '/.whl/\n/.gpudata/\n' >> .git/info/exclude; mkdir -p .gpudata .whl
#   cp ../shared/data/totalsegmentator_examples/example_ct_{dicom20{,_liver},full112{,_liver_tsv1}}.nii.gz \
#      ../shared/data/dcmqi_ct3slice/ct3slice_*.nii.gz .gpudata/
#   printf 'image,label,patient\nexample_ct_dicom20.nii.gz,example_ct_dicom20_liver.nii.gz,ts_dicom20\n%s\n%s\n' \
#      'example_ct_full112.nii.gz,example_ct_full112_liver_tsv1.nii.gz,ts_full112' \
#      'ct3slice_ct.nii.gz,ct3slice_liver_seg.nii.gz,dcmqi_ct3slice' > .gpudata/cases.csv
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp -d .whl \
#      monai==1.6.1 nibabel==5.4.2
# phase3 also needs the trained default as .gpudata/default_v2.safetensors.
set -u
PHASES="phase1, phase2, phase3, phase4, lopo_families, speed, cuda_checks, fine_tune, ab, levers, levers_eval, v4, v4_collect, v4_seed,
folds, folds_collect or default"
PHASE=${1:?$PHASES}
case "$PHASE" in  # a mistyped phase fell through to phase 2's four trainings
    phase1|phase2|phase3|phase4|lopo_families|speed|cuda_checks|fine_tune|ab|levers|levers_eval|v4|v4_collect|v4_seed|folds| \
    folds_collect|default) ;;
    *) echo "unknown phase '$PHASE': give $PHASES" >&2
       exit 2 ;;
esac
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
W=/tmp/ltsw
mkdir -p "$W"
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
case "$PHASE" in v4*) RECIPE=${RECIPE:-scripts/default_model_v3.yaml} ;; esac   # the v4 phases: v3's recipe
if [ "$PHASE" = v4_seed ]; then PHASE=folds; FOLD_SEED=${FOLD_SEED:-7}; fi      # the folds phase, v4's second seed
case "$PHASE" in folds*|default) [ -n "${RECIPE:-}" ] || { echo "$PHASE: set RECIPE (the recipe YAML to train)" >&2
                                                         exit 2; } ;; esac
RECIPE=${RECIPE:-scripts/default_model_v2.yaml}
DATA=.gpudata/cases.csv
COMMON=(--config "$RECIPE" --data "$DATA" --device "${DEVICE:-cuda}" --batch-size 16 --patch-size 192 --warmup 300
        --no-tensorboard --no-progress --overwrite --cache-dir "$W/cache")
case "$PHASE" in v4*|folds*|default) COMMON=(--config "$RECIPE" --data "$DATA" --device "${DEVICE:-cuda}" \
                                     --no-tensorboard --no-progress --overwrite) ;; esac   # RECIPE's own batch etc.
UNET24='{"channels": [24, 48, 96, 192, 384], "strides": [2, 2, 2, 2], "num_res_units": 2, "dropout": 0.1}'

train() {  # train NAME LOGFILE ARGS... : one background training in its own session
    local name=$1 log=$2; shift 2
    setsid nohup python3 -m LiverTumorSegLib train "${COMMON[@]}" --name "$name" "$@" >"$log" 2>&1 &
}

wait_for() {  # wait_for DEADLINE_S PATTERN: until no process matches PATTERN or the deadline passes
    local deadline=$1 pattern=$2
    while pgrep -f "$pattern" >/dev/null && [ "$(elapsed)" -lt "$deadline" ]; do sleep 5; done
}

epochs_for() {  # epochs_for MINUTES WORKER_SHARE: 100-step epochs that fit, from the probed rate
    python3 - "$1" "$2" <<'EOF'
import sys
rate = float(open("/tmp/ltsw/rate").read())           # steps/s of the default recipe with 6 workers, alone
minutes, share = float(sys.argv[1]), float(sys.argv[2])
print(max(5, int(rate * share * 0.75 * minutes * 60 / 100)))
EOF
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, monai, nibabel, numpy; print('torch', torch.__version__, 'monai', monai.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"
echo "cores: $(nproc --all)"

if [ "$PHASE" = phase1 ]; then
    echo "== probe (default recipe, 24-384 U-Net, 6 workers, 2 x 40 steps)"
    python3 -m LiverTumorSegLib train "${COMMON[@]}" --model-options "$UNET24" --val-fraction 0 --num-workers 6 \
        --epochs 2 --iterations-per-epoch 40 -o "$W/probe.safetensors" --log-dir "$W/probe" >"$W/probe.log" 2>&1
    rc=$?
    tail -n 8 "$W/probe.log"
    [ $rc -eq 0 ] || { echo "probe failed (rc $rc)"; cp "$W/probe.log" "$OUT/"; exit 1; }
    python3 - <<'EOF'
import re
text = open("/tmp/ltsw/probe.log").read()
times = [float(t) for t in re.findall(r"epoch \d+/\d+ .* time ([0-9.]+)s", text)]
rate = 40 / times[-1]
open("/tmp/ltsw/rate", "w").write(str(rate))
print(f"probe: {rate:.2f} steps/s (batch 16, patch 192) alone; epoch times {times}")
EOF
    E_DEF=$(epochs_for 15.0 1.0)
    echo "== default ($RECIPE): $E_DEF epochs x 100 steps (max 16 min), background"
    train default "$W/default.log" --model-options "$UNET24" --val-fraction 0 --num-workers 6 --epochs "$E_DEF" \
        --iterations-per-epoch 100 --max-time-minutes 16 --checkpoint-every-steps 500 \
        -o "$W/default.safetensors" --log-dir "$W/default"
    E_FAM=$(epochs_for 6.7 0.33)
    echo "== families: $E_FAM epochs x 100 steps each (max 7 min)"
    train segnet "$W/segnet.log" --model segnet --model-options '{"width": 0.35}' --val-fraction 0 --num-workers 2 \
        --epochs "$E_FAM" --iterations-per-epoch 100 --max-time-minutes 7.0 -o "$W/segnet.safetensors" --log-dir "$W/segnet"
    train resnet18_fcn "$W/resnet18_fcn.log" --model resnet18_fcn --model-options '{"width": 0.5}' --val-fraction 0 \
        --num-workers 2 --epochs "$E_FAM" --iterations-per-epoch 100 --max-time-minutes 7.0 \
        -o "$W/resnet18_fcn.safetensors" --log-dir "$W/resnet18_fcn"
    train alexnet_fcn "$W/alexnet_fcn.log" --model alexnet_fcn --model-options '{"width": 0.75, "fc_channels": 384}' \
        --val-fraction 0 --num-workers 2 --epochs "$E_FAM" --iterations-per-epoch 100 --max-time-minutes 7.0 \
        -o "$W/alexnet_fcn.safetensors" --log-dir "$W/alexnet_fcn"
    train attention_unet "$W/attention_unet.log" --model attention_unet \
        --model-options '{"channels": [16, 32, 64, 128, 256]}' --val-fraction 0 --num-workers 2 --epochs "$E_FAM" \
        --iterations-per-epoch 100 --max-time-minutes 7.0 -o "$W/attention_unet.safetensors" \
        --log-dir "$W/attention_unet"
    sleep 20
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
    wait_for 555 "name (segnet|resnet18_fcn|alexnet_fcn|attention_unet)"
    for n in segnet resnet18_fcn alexnet_fcn attention_unet; do
        echo "--- $n"; grep -E "^epoch" "$W/$n.log" | tail -n 2; tail -n 2 "$W/$n.log"
        cp "$W/$n.safetensors" "$OUT/" 2>/dev/null
    done
    echo "--- default (running on): $(grep -cE '^epoch' "$W/default.log") epochs so far"; grep -E "^epoch" "$W/default.log" | tail -n 1
    tar czf "$OUT/phase1_logs.tgz" -C "$W" probe.log default.log segnet.log resnet18_fcn.log alexnet_fcn.log attention_unet.log 2>/dev/null
    echo "phase1 done at $(elapsed) s"
    exit 0
fi

if [ "$PHASE" = speed ]; then   # issue 13 on the GPU with the bundled default: no training (about 4 min)
    DEVICE=${DEVICE:-cuda}; SLICES=${SLICES:-500}; BATCH_SLICES=${BATCH_SLICES:-100}
    unset OMP_NUM_THREADS   # the CPU stages may use every core here
    # This machine's site-packages hold no bytecode and cannot take any, so every process compiles torch's
    # Python (about 9 s of a 25 s run). A writable bytecode cache, filled by the first run, gives what an
    # installed environment has; the first run below shows the cold number.
    export PYTHONPYCACHEPREFIX=$W/pycache
    unset PYTHONDONTWRITEBYTECODE
    python3 - "$SLICES" "$BATCH_SLICES" <<'PYEOF'
import sys, os, nibabel as nib, numpy as np
img = nib.load(".gpudata/example_ct_dicom20.nii.gz")
a = np.asanyarray(img.dataobj)
def stacked(n):
    idx = np.concatenate([np.arange(a.shape[2]), np.arange(a.shape[2])[::-1]] * (n // (2 * a.shape[2]) + 1))[:n]
    return nib.Nifti1Image(a[:, :, idx], img.affine, img.header)
def upsampled(n):  # the 3 mm abdomen-pelvis CT (liver on 42 of its 112 slices) resampled to 512 x 512 x n
    from scipy.ndimage import zoom
    src = nib.load(".gpudata/example_ct_full112.nii.gz")
    b = np.asanyarray(src.dataobj).astype(np.float32)
    f = (512 / b.shape[0], 512 / b.shape[1], n / b.shape[2])
    out = np.rint(zoom(b, f, order=1)).astype(np.int16)
    affine = src.affine.copy()
    for i in range(3):
        affine[:3, i] = src.affine[:3, i] / f[i]
    header = src.header.copy()
    header.set_data_dtype(np.int16)
    return nib.Nifti1Image(out, affine, header)
make = upsampled if os.environ.get("SPEED_CT") == "upsampled" else stacked
nib.save(make(int(sys.argv[1])), "/tmp/ltsw/ct_big.nii.gz")
os.makedirs("/tmp/ltsw/batch_in", exist_ok=True)
for k in range(5):
    nib.save(make(int(sys.argv[2])), f"/tmp/ltsw/batch_in/case_{k}.nii.gz")
print("CTs written: one of", sys.argv[1], "slices, five of", sys.argv[2], "(512 x 512,",
      "the abdomen-pelvis CT upsampled)" if make is upsampled else "mirrored repetition)")
PYEOF
    show() {  # show REPORT: the stages and the model load's parts of a report
        python3 -c "import json; r=json.load(open('$1')); print({k: round(v, 2) for k, v in r['timings_s'].items()}); print(r.get('model_load_s'))"
    }
    for run in 1 2 3; do   # one CT in a fresh process (the issue's <= 1.5x read + write)
        /usr/bin/time -f "wall %e s" python3 -m LiverTumorSegLib segment "$W/ct_big.nii.gz" --device "$DEVICE" \
            -o "$W/seg_big.nii.gz" --report "$W/seg_big_$run.json" --overwrite --progress none 2>&1 | tail -n 1
        show "$W/seg_big_$run.json"
    done
    sequential() {  # sequential CT REPORT: load the model, then segment CT (no overlap): the budget's parts
        python3 benchmarks/segment_sequential.py "$1" "$W/sequential.nii.gz" "$2" --device "$DEVICE" --overwrite >/dev/null
    }
    sequential "$W/ct_big.nii.gz" "$W/seq_big.json"
    python3 - "$W/seq_big.json" "$W/seg_big_3.json" <<'PYEOF'
import json, sys
seq, fresh = (json.load(open(p))["timings_s"] for p in sys.argv[1:3])
io = seq["read"] + fresh["write"]
print(f"read alone {seq['read']:.2f} s + write {fresh['write']:.2f} s = {io:.2f} s; fresh-process total "
      f"{fresh['total']:.2f} s = {fresh['total'] / io:.2f}x; after the model load {fresh['total'] - fresh['model_load']:.2f} s"
      f" (sequential run, model loaded first: {seq['total']:.2f} s = {seq['total'] / io:.2f}x)")
PYEOF
    for run in 1 2; do   # batch of 5 against 5 x (read + network + write) + one model load, each measured alone
        sequential "$W/batch_in/case_0.nii.gz" "$W/single_$run.json"
        rm -rf "$W/batch_out"; start=$(date +%s.%N)
        python3 -m LiverTumorSegLib segment "$W/batch_in" --device "$DEVICE" -o "$W/batch_out" --progress none | tail -n 1
        end=$(date +%s.%N)
        python3 - "$W/single_$run.json" "$start" "$end" <<'PYEOF'
import json, sys
t = json.load(open(sys.argv[1]))["timings_s"]
budget = 5 * (t["read"] + t["network"] + t["write"]) + t["model_load"]
wall = float(sys.argv[3]) - float(sys.argv[2])
print(f"batch of 5: {wall:.1f} s against {budget:.1f} s = {wall / budget:.2f}x (single: { {k: round(v, 2) for k, v in t.items()} })")
PYEOF
    done
    mkdir -p "$W/big1" "$W/big3"   # per CT in a batch: (batch of 3 - batch of 1) / 2, 512 x 512 x SLICES each
    cp "$W/ct_big.nii.gz" "$W/big1/big_0.nii.gz"; rm -f "$W/big_batches"
    for k in 0 1 2; do cp "$W/ct_big.nii.gz" "$W/big3/big_$k.nii.gz"; done
    for run in 1 2; do
        for n in 1 3; do
            rm -rf "$W/big_out"; start=$(date +%s.%N)
            python3 -m LiverTumorSegLib segment "$W/big$n" --device "$DEVICE" -o "$W/big_out" --progress none >/dev/null 2>&1
            end=$(date +%s.%N); echo "$n $start $end" >> "$W/big_batches"
        done
    done
    python3 - "$W/big_batches" "$W/seq_big.json" "$W/seg_big_3.json" <<'PYEOF'
import json, sys
rows = [line.split() for line in open(sys.argv[1])]
walls = {}
for n, start, end in rows:
    walls.setdefault(int(n), []).append(float(end) - float(start))
seq, fresh = (json.load(open(p))["timings_s"] for p in sys.argv[2:4])
io = seq["read"] + fresh["write"]
for one, three in zip(walls[1], walls[3]):
    per_ct = (three - one) / 2
    print(f"batch of 1: {one:.1f} s, of 3: {three:.1f} s -> {per_ct:.2f} s per further CT = {per_ct / io:.2f}x read + write")
PYEOF
    cp "$W/seg_big_3.json" "$W/seq_big.json" "$W/single_2.json" "$OUT/" 2>/dev/null
    echo "speed done at $(elapsed) s"
    exit 0
fi

cuda_tests_and_sample() {  # the CUDA tests CI skips (log to $OUT/cuda_tests.log), then the sample on CUDA
    echo "== CUDA tests (the ones CI skips), at $(elapsed) s"
    timeout "${TEST_SECONDS:-240}" python3 -m pytest -q -p no:cacheprovider -rs -m gpu \
        Testing/Python/test_inference_device.py Testing/Python/test_inference_engine.py Testing/Python/test_models.py \
        Testing/Python/test_training_loop.py Testing/Python/test_device_input.py >"$OUT/cuda_tests.log" 2>&1
    echo "pytest exit $?"; tail -n 15 "$OUT/cuda_tests.log"
    echo "== segment --sample --device cuda, at $(elapsed) s"
    python3 -m LiverTumorSegLib segment --sample --device cuda -o "$W/sample_seg.nii.gz" --overwrite --progress none 2>&1 \
        | tail -n 4
}

if [ "$PHASE" = fine_tune ]; then   # stop 56's new paths on CUDA: train --init-from, heldout_comparison with maps
    DEVICE=${DEVICE:-cuda}
    [ "$DEVICE" = cuda ] && cuda_tests_and_sample
    echo "== train --init-from default on $DEVICE: leave-one-patient-out fold ${FT_FOLD:-2} of 3, at $(elapsed) s"
    # Every patient of the shared cases trained the default, so the run must say its validation patient is not held out.
    python3 -m LiverTumorSegLib train --init-from default --config scripts/default_model_v10.yaml --data "$DATA" \
        --device "$DEVICE" --folds 3 --fold "${FT_FOLD:-2}" --epochs "${FT_EPOCHS:-3}" \
        --iterations-per-epoch "${FT_ITERATIONS:-100}" --val-every "${FT_EPOCHS:-3}" --lr 1e-4 --warmup 0 \
        --batch-size "${FT_BATCH:-16}" --patch-size "${FT_PATCH:-192}" --num-workers "${FT_WORKERS:-6}" \
        --no-tensorboard --no-progress --overwrite --cache-dir "$W/cache" --log-dir "$W/ft" \
        -o "$W/ft.safetensors" >"$OUT/fine_tune.log" 2>&1
    echo "train exit $?"; grep -i -E "warning|held out|done:|dice" "$OUT/fine_tune.log" | tail -n 12
    python3 - "$W/ft.safetensors" <<'PYEOF'
import json, sys
from LiverTumorSegLib.package import read_package_metadata
meta = read_package_metadata(sys.argv[1])
training = meta.get("training", {})
print("init_from:", json.dumps(training.get("init_from"), default=str)[:600])
print("validation:", json.dumps({k: v for k, v in meta.get("validation", {}).items()
                                 if "held" in k or "init" in k or k in ("liver_dice", "patients")}, default=str)[:600])
PYEOF
    echo "== segment --sample with the fine-tuned package on $DEVICE, at $(elapsed) s"
    python3 -m LiverTumorSegLib segment --sample --model "$W/ft.safetensors" --device "$DEVICE" \
        -o "$W/sample_ft.nii.gz" --overwrite --progress none 2>&1 | tail -n 4
    echo "== heldout_comparison.py (the bundled v10 and the fine-tuned package, probability maps, FROC) on $DEVICE, at $(elapsed) s"
    rm -rf "$W/hc_cts" "$W/hc_refs" "$W/hc"; mkdir -p "$W/hc_cts" "$W/hc_refs"
    tail -n +2 "$DATA" | while IFS=, read -r image label patient; do
        ln -s "$PWD/.gpudata/$image" "$W/hc_cts/$patient.nii.gz"; ln -s "$PWD/.gpudata/$label" "$W/hc_refs/$patient.nii.gz"
    done
    python3 scripts/heldout_comparison.py "$W/hc_cts" --ref "$W/hc_refs" -o "$W/hc" --models v10 \
        --model "ft=$W/ft.safetensors" --device "$DEVICE" >"$OUT/heldout_comparison.log" 2>&1
    echo "heldout_comparison exit $?"; tail -n 30 "$OUT/heldout_comparison.log"
    cp "$W/hc/comparison.md" "$W/hc/comparison.json" "$W/hc/per_case.csv" "$OUT/" 2>/dev/null
    echo "fine_tune done at $(elapsed) s"
    exit 0
fi

if [ "$PHASE" = cuda_checks ]; then   # the CUDA tests, the sample on CUDA, one profiled 500-slice segment
    cuda_tests_and_sample
    if [ -f "$W/ct_big.nii.gz" ]; then
        echo "== one segment of the 500-slice CT under cProfile (bytecode cache warm), at $(elapsed) s"
        export PYTHONPYCACHEPREFIX=$W/pycache
        python3 -m cProfile -o "$W/segment.prof" -m LiverTumorSegLib segment "$W/ct_big.nii.gz" --device cuda \
            -o "$W/seg_prof.nii.gz" --report "$W/seg_prof.json" --overwrite --progress none >/dev/null 2>&1
        python3 - "$W/segment.prof" "$W/seg_prof.json" >"$OUT/segment_profile.txt" <<'PYEOF'
import json, pstats, sys
print({k: round(v, 2) for k, v in json.load(open(sys.argv[2]))["timings_s"].items()})
stats = pstats.Stats(sys.argv[1])
stats.sort_stats("tottime").print_stats(30)
stats.sort_stats("cumulative").print_stats(60)
PYEOF
        head -n 1 "$OUT/segment_profile.txt"
    fi
    echo "cuda_checks done at $(elapsed) s"
    exit 0
fi

if [ "$PHASE" = ab ]; then   # the working tree (new) against BASE_FILES (base), interleaved, on one 500-slice CT
    export PYTHONPYCACHEPREFIX=$W/pycache AB_SLICES=${AB_SLICES:-500}
    unset OMP_NUM_THREADS PYTHONDONTWRITEBYTECODE
    mkdir -p "$W/ab_new" "$W/big3"
    for pair in ${BASE_FILES:?BASE_FILES=\"SAVED=REPO_PATH ...\"}; do cp "${pair#*=}" "$W/ab_new/$(echo "${pair#*=}" | tr / _)"; done
    use() {  # use new|base: put that variant's library files in place
        for pair in $BASE_FILES; do
            if [ "$1" = base ]; then cp "${pair%%=*}" "${pair#*=}"; else cp "$W/ab_new/$(echo "${pair#*=}" | tr / _)" "${pair#*=}"; fi
        done
    }
    python3 - <<'PYEOF'
import nibabel as nib, numpy as np
img = nib.load(".gpudata/example_ct_dicom20.nii.gz")
a = np.asanyarray(img.dataobj)
import os; n = int(os.environ.get("AB_SLICES", "500"))
idx = np.concatenate([np.arange(a.shape[2]), np.arange(a.shape[2])[::-1]] * (n // 40 + 1))[:n]
nib.save(nib.Nifti1Image(a[:, :, idx], img.affine, img.header), "/tmp/ltsw/big3/big_0.nii.gz")
PYEOF
    cp "$W/big3/big_0.nii.gz" "$W/big3/big_1.nii.gz"; cp "$W/big3/big_0.nii.gz" "$W/big3/big_2.nii.gz"
    mkdir -p "$W/big1"; cp "$W/big3/big_0.nii.gz" "$W/big1/"
    one() {  # one VARIANT RUN: a fresh-process segment of the 500-slice CT, its stages
        use "$1"
        python3 -m LiverTumorSegLib segment "$W/big1/big_0.nii.gz" --device "${DEVICE:-cuda}" -o "$W/ab.nii.gz" \
            --report "$W/ab_$1_$2.json" --overwrite --progress none >/dev/null 2>&1
        python3 -c "import json; r=json.load(open('$W/ab_$1_$2.json')); t=r['timings_s']; print('$1', '$2', t['total'], {k: round(v, 2) for k, v in t.items() if k != 'total'})"
    }
    one new warm; one base warm
    for k in $(seq 1 "${AB_PAIRS:-3}"); do one new "$k"; one base "$k"; done
    for k in 1 2; do
        for v in new base; do
            use "$v"
            for n in 1 3; do
                rm -rf "$W/ab_out"; start=$(date +%s.%N)
                python3 -m LiverTumorSegLib segment "$W/big$n" --device "${DEVICE:-cuda}" -o "$W/ab_out" --progress none >/dev/null 2>&1
                end=$(date +%s.%N); echo "$v batch of $n: $(python3 -c "print(round($end - $start, 2))") s"
            done
        done
    done
    use new
    python3 benchmarks/segment_sequential.py "$W/big1/big_0.nii.gz" "$W/ab_seq.nii.gz" "$W/ab_seq.json" --device "${DEVICE:-cuda}" \
        --overwrite >/dev/null 2>&1
    python3 -c "import json; t=json.load(open('$W/ab_seq.json'))['timings_s']; print('read alone', t['read'], 'write', t['write'])"
    tar czf "$OUT/ab_reports.tgz" -C "$W" $(cd "$W" && ls ab_*.json)
    echo "== CUDA tests, at $(elapsed) s"
    timeout "${TEST_SECONDS:-150}" python3 -m pytest -q -p no:cacheprovider -rs -m gpu Testing/Python/test_device_input.py \
        Testing/Python/test_inference_engine.py Testing/Python/test_inference_device.py 2>&1 | tail -n 6
    echo "ab done at $(elapsed) s"
    exit 0
fi

if [ "$PHASE" = phase3 ]; then   # GPU timing on a real 512 x 512 CT, then longer LOPO folds (5 workers each)
    python3 - <<'PYEOF'
import nibabel as nib, numpy as np
img = nib.load(".gpudata/example_ct_dicom20.nii.gz")
a = np.asanyarray(img.dataobj)
idx = np.concatenate([np.arange(a.shape[2]), np.arange(a.shape[2])[::-1]] * 13)[:500]
nib.save(nib.Nifti1Image(a[:, :, idx], img.affine, img.header), "/tmp/ltsw/ct512.nii.gz")
print("stacked CT", a[:, :, idx].shape, "(x, y, z), from", a.shape)
PYEOF
    for run in 1 2; do
        /usr/bin/time -f "wall %e s" python3 -m LiverTumorSegLib segment "$W/ct512.nii.gz" --model .gpudata/default_v2.safetensors \
            --device cuda -o "$W/seg512.nii.gz" --report "$W/seg512_$run.json" --overwrite --progress none 2>&1 | tail -n 2
        python3 -c "import json; r=json.load(open('$W/seg512_$run.json')); print({k: round(v, 2) for k, v in r.get('timings_s', {}).items()})"
    done
    cp "$W/seg512_2.json" "$OUT/"
    [ -f "$W/rate" ] || echo 12.5 > "$W/rate"
    E_FOLD=$(epochs_for 6.0 0.8)
    echo "== LOPO folds: $E_FOLD epochs x 100 steps each (max 6.3 min)"
    for k in 0 1 2; do
        train "lopo$k" "$W/lopoL$k.log" --model-options "$UNET24" --folds 3 --fold $k --val-every "$E_FOLD" --num-workers 5 \
            --epochs "$E_FOLD" --iterations-per-epoch 100 --max-time-minutes 6.3 -o "$W/lopoL$k.safetensors" \
            --log-dir "$W/lopoL$k" --cache-dir "$W/cacheL$k"
    done
    wait_for 540 "name lopo[0-9]"
    for k in 0 1 2; do
        echo "--- lopo$k"; grep -E "^epoch" "$W/lopoL$k.log" | tail -n 1; tail -n 1 "$W/lopoL$k.log"
        cp "$W/lopoL$k.safetensors" "$OUT/" 2>/dev/null
    done
    tar czf "$OUT/phase3_logs.tgz" -C "$W" lopoL0.log lopoL1.log lopoL2.log 2>/dev/null
    echo "phase3 done at $(elapsed) s"
    exit 0
fi

if [ "$PHASE" = levers ]; then   # 2 arms x 3 folds x 2 training seeds, all at once, in the background
    E=${LEVER_EPOCHS:-12}; FIELD=${LEVER_AUGMENTATION:-'{"liver_field_probability": 0.5}'}
    for arm in v2 field; do
        extra=(); [ "$arm" = field ] && extra=(--augmentation "$FIELD")
        mkdir -p "$W/levers/$arm"
        for seed in ${LEVER_SEEDS:-2027 7}; do
            for k in 0 1 2; do
                n="lever_${arm}_s${seed}_f$k"
                # --split-seed: every training seed holds out the same patient in fold k
                train "$n" "$W/$n.log" --model-options "$UNET24" --folds 3 --fold "$k" --seed "$seed" --split-seed 2027 \
                    ${extra[@]+"${extra[@]}"} --device "${DEVICE:-cuda}" --val-every "$E" --num-workers 1 --epochs "$E" \
                    --iterations-per-epoch "${LEVER_ITERATIONS:-100}" --max-time-minutes "${LEVER_MINUTES:-8.5}" \
                    -o "$W/levers/$arm/s${seed}_f$k.safetensors" --log-dir "$W/$n" --cache-dir "$W/cache_$n"
            done
        done
    done
    sleep 30; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
    wait_for 570 "name lever_"
    for f in "$W"/lever_*.log; do echo "--- $(basename "$f"): $(grep -cE '^epoch' "$f") epochs; $(tail -n 1 "$f")"; done
    tar czf "$OUT/levers_logs.tgz" -C "$W" $(cd "$W" && ls lever_*.log) 2>/dev/null
    echo "levers trained at $(elapsed) s; next: levers_eval"
    exit 0
fi

if [ "$PHASE" = levers_eval ]; then   # the held-out patients of the lever models (after phase levers)
    wait_for 300 "name lever_"
    python3 benchmarks/compare_recipes.py --arm "v2=$W/levers/v2" --arm "field=$W/levers/field" --data "$DATA" \
        --device "${DEVICE:-cuda}" --json "$OUT/levers.json" ${LEVER_EVAL_ARGS:-} 2>"$OUT/levers_eval.log" \
        | tee "$OUT/levers_table.txt"
    echo "levers_eval done at $(elapsed) s"
    exit 0
fi

if [ "$PHASE" = v4 ]; then   # the v4 candidate and its folds, each with the recipe's own settings
    train v4default "$W/v4_default.log" --val-fraction 0 --num-workers 7 --checkpoint-every-steps 500 \
        -o "$W/v4_default.safetensors" --log-dir "$W/v4_default" --cache-dir "$W/cache_v4_default"
    for k in 0 1 2; do
        train "v4fold$k" "$W/v4_fold$k.log" --folds 3 --fold "$k" --epochs 27 --val-every 27 --num-workers 3 \
            -o "$W/v4_fold$k.safetensors" --log-dir "$W/v4_fold$k" --cache-dir "$W/cache_v4_fold$k"
    done
    sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; uptime
    wait_for "${V4_SECONDS:-540}" "name v4(default|fold[0-9])"
    for n in v4_default v4_fold0 v4_fold1 v4_fold2; do
        echo "--- $n: $(grep -cE '^epoch' "$W/$n.log") epochs"; grep -E "^(data|epoch)" "$W/$n.log" | tail -n 2
        tail -n 1 "$W/$n.log"
    done
    echo "v4 returns at $(elapsed) s; trainings still running: $(pgrep -fc 'name v4(default|fold[0-9])')"
    exit 0
fi

if [ "$PHASE" = v4_collect ]; then   # after v4: wait for the four trainings, return packages, run the CUDA tests
    wait_for "${V4_SECONDS:-420}" "name v4(default|fold[0-9])"
    for n in v4_default v4_fold0 v4_fold1 v4_fold2; do
        echo "--- $n"; grep -E "^(data|epoch)" "$W/$n.log" | tail -n 2; tail -n 2 "$W/$n.log"
        cp "$W/$n.safetensors" "$OUT/" 2>/dev/null
    done
    tar czf "$OUT/v4_logs.tgz" -C "$W" v4_default.log v4_fold0.log v4_fold1.log v4_fold2.log 2>/dev/null
    echo "== CUDA tests (the ones CI skips), at $(elapsed) s"
    timeout "${TEST_SECONDS:-150}" python3 -m pytest -q -p no:cacheprovider -rs Testing/Python/test_inference_device.py \
        Testing/Python/test_inference_engine.py Testing/Python/test_models.py Testing/Python/test_training_loop.py \
        -k "cuda or gpu" 2>&1 | tail -n 25
    echo "v4_collect done at $(elapsed) s"
    exit 0
fi

FOLD_SEED=${FOLD_SEED:-2027}
FOLD_SEEDS=${FOLD_SEEDS:-$FOLD_SEED}   # several training seeds' folds at once: "2027 7"
fold_tag() { echo "$(basename "$RECIPE" .yaml)_s$1"; }   # e.g. default_model_v5_s2027: fold K is ..._s2027_foldK
fold_report() {  # fold_report: each fold's last lines; the logs (one tar) and the finished packages of the seeds in
    # FOLD_COPY_SEEDS (FOLD_SEEDS unless set; at most 8 files of 16 MiB, 64 MiB together come back) to $OUT
    local s k n
    for s in $FOLD_SEEDS; do
        for k in 0 1 2; do
            n="$(fold_tag "$s")_fold$k"; echo "--- $n"; grep -E "^(data|epoch)" "$W/$n.log" | tail -n 2; tail -n 1 "$W/$n.log"
            if pgrep -f "name $n( |\$)" >/dev/null; then echo "    still training"
            elif case " ${FOLD_COPY_SEEDS:-$FOLD_SEEDS} " in *" $s "*) true ;; *) false ;; esac; then
                cp "$W/$n.safetensors" "$OUT/" 2>/dev/null || echo "    no package"
            fi
        done
    done
    (cd "$W" && tar czf "$OUT/fold_logs.tgz" $(for s in $FOLD_SEEDS; do echo "$(fold_tag "$s")"_fold[0-9].log; done))
}
fold_pattern() { local s p=""; for s in $FOLD_SEEDS; do p="$p${p:+|}$(fold_tag "$s")"; done; echo "name ($p)_fold[0-9]"; }
if [ "$PHASE" = folds ]; then   # RECIPE's three folds for each seed of FOLD_SEEDS, nothing beside them
    E=${FOLD_EPOCHS:-27}
    for s in $FOLD_SEEDS; do
        for k in 0 1 2; do
            n="$(fold_tag "$s")_fold$k"
            train "$n" "$W/$n.log" --seed "$s" --split-seed 2027 --folds 3 \
                --fold "$k" --epochs "$E" --val-every "$E" --num-workers "${FOLD_WORKERS:-5}" \
                ${FOLD_ITERATIONS:+--iterations-per-epoch "$FOLD_ITERATIONS"} ${FOLD_ARGS:-} \
                -o "$W/$n.safetensors" --log-dir "$W/$n" --cache-dir "$W/cache_${s}_fold$k"
        done
    done
    sleep 30; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null; uptime
    wait_for "${FOLD_SECONDS:-540}" "$(fold_pattern)"
    fold_report
    echo "folds returns at $(elapsed) s; still training: $(pgrep -fc "$(fold_pattern)")"
    exit 0
fi
if [ "$PHASE" = folds_collect ]; then   # after folds: wait for the folds still training and return them
    wait_for "${FOLD_SECONDS:-420}" "$(fold_pattern)"
    fold_report
    echo "folds_collect done at $(elapsed) s"
    exit 0
fi

if [ "$PHASE" = default ]; then   # RECIPE's model on all patients, alone, within one call; resumable
    TAG="$(basename "$RECIPE" .yaml)"; LOG_DIR="$W/${TAG}_all"; mkdir -p "$LOG_DIR/checkpoints"
    RESUME=()
    if [ -n "${RESUME_FROM:-}" ]; then cp "$RESUME_FROM" "$LOG_DIR/checkpoints/last.pt" || exit 1; RESUME=(--resume); fi
    python3 -m LiverTumorSegLib train "${COMMON[@]}" --name "$TAG" --val-fraction 0 \
        --num-workers "${DEFAULT_WORKERS:-12}" --checkpoint-every-steps 500 --max-time-minutes "${DEFAULT_MINUTES:-8.5}" \
        "${RESUME[@]}" -o "$W/$TAG.safetensors" --log-dir "$LOG_DIR" >"$OUT/${TAG}_all.log" 2>&1
    echo "train rc $?"; tail -n 3 "$OUT/${TAG}_all.log"
    if grep -q "(completed)" "$OUT/${TAG}_all.log"; then cp "$W/$TAG.safetensors" "$OUT/"; fi
    sha256sum "$LOG_DIR/checkpoints/last.pt" && split -b 15M -d "$LOG_DIR/checkpoints/last.pt" "$OUT/last.pt.part"
    echo "default done at $(elapsed) s"
    exit 0
fi

if [ "$PHASE" = phase4 ]; then   # architectures at an equal budget on one leave-one-patient-out fold (fold 0)
    E=${EPOCHS4:-9}
    COMMON=(--config "$RECIPE" --data "$DATA" --device "${DEVICE:-cuda}" --batch-size 16 --patch-size 192 --warmup 300
            --no-tensorboard --no-progress --overwrite)  # no --cache-dir: each family has its own (train refuses two)
    for spec in "unet|$UNET24" "segnet|{\"width\": 0.35}" "resnet18_fcn|{\"width\": 0.5}" \
                "alexnet_fcn|{\"width\": 0.75, \"fc_channels\": 384}" \
                "attention_unet|{\"channels\": [16, 32, 64, 128, 256]}"; do
        arch=${spec%%|*}; opts=${spec#*|}
        train "arch_$arch" "$OUT/arch_$arch.log" --model "$arch" --model-options "$opts" --folds 3 --fold 0 \
            --val-every "$E" --num-workers 3 --epochs "$E" --iterations-per-epoch 100 --max-time-minutes 2.6 \
            -o "$W/arch_$arch.safetensors" --log-dir "$W/arch_$arch" --cache-dir "$W/cache_$arch"
    done
    wait_for 215 "name arch_"
    for f in "$OUT"/arch_*.log; do echo "--- $f"; tail -n 1 "$f"; done
    echo "phase4 done at $(elapsed) s"
    exit 0
fi

if [ "$PHASE" = lopo_families ]; then   # phase4 on every leave-one-patient-out fold, all 15 trainings at once
    E=${LOPO_EPOCHS:-6}; MINUTES=${LOPO_MINUTES:-6.5}
    COMMON=(--config "$RECIPE" --data "$DATA" --device "${DEVICE:-cuda}" --batch-size "${LOPO_BATCH:-16}"
            --patch-size "${LOPO_PATCH:-192}" --warmup 300 --no-tensorboard --no-progress --overwrite)  # no --cache-dir
    rm -f "$W"/lopo_*.safetensors   # an earlier call's packages on a still-warm machine would join the summary
    for k in ${LOPO_FOLDS:-0 1 2}; do
        for spec in "unet|$UNET24" "segnet|{\"width\": 0.35}" "resnet18_fcn|{\"width\": 0.5}" \
                    "alexnet_fcn|{\"width\": 0.75, \"fc_channels\": 384}" \
                    "attention_unet|{\"channels\": [16, 32, 64, 128, 256]}"; do
            arch=${spec%%|*}; opts=${spec#*|}; run="lopo_${arch}_f$k"
            case " ${LOPO_ARCHS:-$arch} " in *" $arch "*) ;; *) continue ;; esac   # LOPO_ARCHS: only these
            train "$run" "$OUT/$run.log" --model "$arch" --model-options "$opts" --folds 3 --fold "$k" \
                --val-every "$E" --num-workers "${LOPO_WORKERS:-1}" --epochs "$E" \
                --iterations-per-epoch "${LOPO_ITERATIONS:-100}" --max-time-minutes "$MINUTES" \
                -o "$W/$run.safetensors" --log-dir "$W/$run" --cache-dir "$W/cache_$run" --seed "${LOPO_SEED:-2027}"
        done
    done
    wait_for $(( ${LOPO_DEADLINE:-530} )) "name lopo_"
    pgrep -f "name lopo_" >/dev/null && echo "still running at $(elapsed) s: $(pgrep -f -a 'name lopo_' | wc -l) process(es)"
    for f in "$OUT"/lopo_*.log; do
        echo "--- $(basename "$f")"
        if grep -q "^done:" "$f"; then grep "^done:" "$f" | tail -n 1; else tail -n 3 "$f"; fi
    done
    python3 - "$W" "$OUT/lopo_families.json" <<'PYEOF'
import json, sys
from pathlib import Path
from LiverTumorSegLib.package import read_package_metadata
rows = []
for path in sorted(Path(sys.argv[1]).glob("lopo_*_f[0-9].safetensors")):
    meta = read_package_metadata(path)
    v, t = meta.get("validation") or {}, meta.get("training") or {}
    whole = v.get("whole_volume") or {}
    rows.append({"run": path.stem, "architecture": (meta.get("architecture") or {}).get("name"),
                 "fold": int(path.stem.rsplit("_f", 1)[1]), "steps": t.get("global_step"),
                 "stop_reason": t.get("stop_reason"), "seconds": t.get("seconds"),
                 "held_out": [c.get("case") for c in whole.get("cases") or []],
                 "slices_liver_dice": v.get("liver_dice"), "slices_synthetic_tumor_dice": v.get("tumor_dice"),
                 "whole_liver_dice": whole.get("liver_dice"), "whole_liver_dice_raw": (whole.get("raw_network") or {}).get("liver_dice"),
                 "whole_no_tumor_predicted": whole.get("tumor_dice")})
    r = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[-1].items()}  # None: not measured
    print(f"{r['run']:28s} {r['steps']} steps ({r['stop_reason']}): slices liver {r['slices_liver_dice']} tumor "
          f"{r['slices_synthetic_tumor_dice']}; whole CT liver {r['whole_liver_dice']} (raw "
          f"{r['whole_liver_dice_raw']}), no tumor predicted {r['whole_no_tumor_predicted']}")
json.dump(rows, open(sys.argv[2], "w"), indent=1)
PYEOF
    echo "lopo_families done at $(elapsed) s"
    exit 0
fi

# ---- phase 2
[ -f "$W/rate" ] || echo 3.0 > "$W/rate"    # machine lost between phases: a cautious rate guess
if pgrep -f "name default" >/dev/null || [ -f "$W/default.safetensors" ]; then
    echo "default ($RECIPE) still training from phase 1 (or done)"
else
    E_DEF=$(epochs_for 8.0 0.6)
    echo "machine was lost between phases: default ($RECIPE) again, $E_DEF epochs (max 8.3 min)"
    train default "$W/default.log" --model-options "$UNET24" --val-fraction 0 --num-workers 6 --epochs "$E_DEF" \
        --iterations-per-epoch 100 --max-time-minutes 8.3 -o "$W/default.safetensors" --log-dir "$W/default"
fi
E_FOLD=$(epochs_for 6.5 0.4)
echo "== LOPO folds: $E_FOLD epochs x 100 steps each (max 6.8 min)"
for k in 0 1 2; do
    train "lopo$k" "$W/lopo$k.log" --model-options "$UNET24" --folds 3 --fold $k --val-every "$E_FOLD" --num-workers 3 \
        --epochs "$E_FOLD" --iterations-per-epoch 100 --max-time-minutes 6.8 -o "$W/lopo$k.safetensors" --log-dir "$W/lopo$k" --cache-dir "$W/cache_lopo$k"
done
wait_for 480 "name (default|lopo[0-9])"
for n in default lopo0 lopo1 lopo2; do
    echo "--- $n"; grep -E "^(data|epoch)" "$W/$n.log" | tail -n 2; tail -n 3 "$W/$n.log"
done
cp "$W/default.safetensors" "$OUT/" 2>/dev/null
split -b 10M "$W/alexnet_fcn.safetensors" "$OUT/alexnet_fcn.part_" 2>/dev/null   # one file back is <= 16 MiB
echo "== GPU timing: segment a 500-slice CT (sample stacked by mirrored repetition) with the new default"
python3 - <<'EOF'
import nibabel as nib, numpy as np
img = nib.load(".gpudata/example_ct_full112.nii.gz")
a = np.asanyarray(img.dataobj)
idx = np.concatenate([np.arange(a.shape[2]), np.arange(a.shape[2])[::-1]] * 3)[:500]
nib.save(nib.Nifti1Image(a[:, :, idx], img.affine, img.header), "/tmp/ltsw/ct500.nii.gz")
print("stacked CT", a[:, :, idx].shape, "(x, y, z)")
EOF
if [ -f "$W/default.safetensors" ]; then
    for run in 1; do
        /usr/bin/time -f "wall %e s" python3 -m LiverTumorSegLib segment "$W/ct500.nii.gz" --model "$W/default.safetensors" \
            --device cuda -o "$W/seg500.nii.gz" --report "$W/seg500_$run.json" --overwrite --progress none 2>&1 | tail -n 2
        python3 -c "import json; r=json.load(open('$W/seg500_$run.json')); print({k: round(v, 2) for k, v in r.get('timings_s', {}).items()})"
    done
    cp "$W/seg500_1.json" "$OUT/" 2>/dev/null
fi
tar czf "$OUT/phase2_logs.tgz" -C "$W" default.log lopo0.log lopo1.log lopo2.log default/log.csv 2>/dev/null
echo "phase2 done at $(elapsed) s"
