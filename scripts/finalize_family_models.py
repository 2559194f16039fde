"""Bundle one trained package per architecture family (issue 11) with its comparison numbers, float16 storage.

    python scripts/finalize_family_models.py --models DIR --comparison-logs LOGDIR [-o Resources/Models]

``DIR`` holds what ``scripts/gpu_training_round.sh phase1`` wrote: ``segnet.safetensors``,
``resnet18_fcn.safetensors``, ``alexnet_fcn.safetensors``, ``attention_unet.safetensors`` (the default v2
recipe, all 3 patients, reduced widths so that each package is <= 20 MB). ``LOGDIR`` holds the
``arch_<architecture>.log`` training logs of ``gpu_training_round.sh phase4``: every family, the U-Net
included, trained at an equal budget without patient ts_dicom20 (leave-one-patient-out fold 0) and
validated on that patient. Their last line carries the held-out Dice; that comparison goes into each
package's ``validation`` block (it is the fold model's number, not the shipped model's, and says so).
Each output is ``<architecture>_v2.safetensors``; the weights are stored as float16 and re-verified on load.
"""
import argparse
import re
import sys
from pathlib import Path

from LiverTumorSegLib.package import carried_metadata, load_model_package, save_model_package

FAMILIES = {
    "segnet": "SegNet (VGG16-style encoder at 0.35 width, max-pool-index unpooling decoder; as in Dhanush et al.)",
    "resnet18_fcn": "ResNet-18-FCN (ResNet-18 encoder at 0.5 width, U-Net-style upsampling decoder; as in "
                    "Elmenabawy et al.)",
    "alexnet_fcn": "AlexNet-FCN / CDNN-AlexNet (AlexNet convolutions at 0.75 width, FC6/FC7 as 288-channel "
                   "convolutions (fc_channels 384 x width 0.75), transposed-convolution decoder; Elmenabawy et al.)",
    "attention_unet": "Attention U-Net (16-256 channels, attention gates on the skips; as in Li et al.)",
}
# train's last line: "validation liver Dice" in older versions, now "validation (slices on the network grid) liver
# Dice" or "validation (whole volumes, CT grid) liver Dice"; the old pattern matched none of today's lines
DONE_LINE = re.compile(r"done: (\d+) epochs, (\d+) steps .*?validation(?: \(([^)]*)\))? liver Dice ([0-9.]+), "
                       r"tumor Dice ([0-9.]+)")
SLICES = "slices on the network grid"
WHOLE = "whole volumes, CT grid"
NOT_STATED = "not stated in the log (older train)"
# what each kind of 'done:' line measured, for the packages' validation.method
MEASURED = {
    SLICES: "validated on that patient's slices with synthetic tumors on the network grid (dice_tumor_synthetic: "
            "Dice of the synthetic tumors)",
    WHOLE: "validated on that patient's whole CT through the inference pipeline (segment's post-processing), "
           "without synthetic tumors: the patient has no labelled tumor, so dice_tumor_whole_volume is 1.0 when no "
           "tumor is predicted and 0 otherwise (LiTS per case), not a tumor's Dice",
    NOT_STATED: "validated on that patient (the train log does not say on what: slices on the network grid with "
                "synthetic tumors in the train versions that printed such lines)",
}


def comparison(log_dir: Path) -> dict:
    """``{architecture: {"steps", "dice_liver", tumor Dice, "validated_on"}}`` from the phase-4 logs. The tumor
    Dice is ``dice_tumor_synthetic`` for slice-level validation (synthetic tumors), ``dice_tumor_whole_volume``
    for whole-volume validation (the held-out real CT, which has no labelled tumor: 1.0 = no false tumor); train
    prints the whole-volume numbers when it has them, and they were stored as a synthetic tumor's Dice."""
    rows = {}
    for log in sorted(log_dir.glob("arch_*.log")):
        match = DONE_LINE.search(log.read_text())
        if match:
            kind = match.group(3) if match.group(3) in (SLICES, WHOLE) else NOT_STATED
            tumor = "dice_tumor_whole_volume" if kind == WHOLE else "dice_tumor_synthetic"
            rows[log.stem[len("arch_"):]] = {"steps": int(match.group(2)), "dice_liver": float(match.group(4)),
                                             tumor: float(match.group(5)), "validated_on": kind}
    return rows


def trained_how(training: dict) -> str:
    """``cuda, 1200 steps of batch 16, 192x192 patches`` as a package's ``training`` record gives them ("" when it
    records none): the hardware and steps of the v2 round (one H100, 1,200 steps) were written into every
    package this script made, however it had been trained."""
    config = training.get("config") or {}
    steps, batch, patch = training.get("global_step"), config.get("batch_size"), config.get("patch_size")
    parts = [str(training["device"])] if training.get("device") else []
    if steps is not None:
        parts.append(f"{steps} steps" + (f" of batch {batch}" if batch else ""))
    if patch:
        parts.append(f"{patch}x{patch} patches")
    return ", ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", required=True)
    parser.add_argument("--comparison-logs", required=True)
    parser.add_argument("-o", "--output-dir", default="Resources/Models")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    if not Path(args.comparison_logs).is_dir():
        parser.error(f"--comparison-logs '{args.comparison_logs}' is not a folder (it holds the arch_*.log files)")
    table = comparison(Path(args.comparison_logs))
    missing = [arch for arch in FAMILIES if arch not in table]
    if missing:  # the packages would claim a comparison their metadata does not hold
        parser.error(f"no 'done: ... liver Dice ..., tumor Dice ...' line for {', '.join(missing)} in "
                     f"'{args.comparison_logs}' (arch_<architecture>.log)")
    kinds = sorted({row["validated_on"] for row in table.values()})
    if len(kinds) > 1:  # a whole-volume Dice beside a slice Dice is no comparison at an equal budget
        parser.error("the logs' validations differ (" + "; ".join(
            f"{kind}: {', '.join(a for a, row in sorted(table.items()) if row['validated_on'] == kind)}"
            for kind in kinds) + "); the families compare only when validated alike: train them all again with "
            "the same train version, or give logs of one kind")
    measured = MEASURED[kinds[0]]
    steps = sorted({int(row["steps"]) for row in table.values() if row.get("steps") is not None})
    steps_text = (f"{steps[0]} steps" if len(steps) == 1 else f"{steps[0]}-{steps[-1]} steps" if steps else
                  "the steps the logs record")
    # every input and output checked before the first package is written: a missing one stopped the run with
    # some packages in the bundled folder rewritten and the rest not; a U-Net given as segnet.safetensors was
    # saved as a "SegNet" package
    from LiverTumorSegLib.fileutil import check_can_write
    from LiverTumorSegLib.package import read_package_metadata

    packages = {}
    for arch in FAMILIES:
        path = Path(args.models) / f"{arch}.safetensors"
        if not path.is_file():
            parser.error(f"missing package '{path}' (one per family: {', '.join(FAMILIES)})")
        built = (read_package_metadata(path).get("architecture") or {}).get("name")
        if built != arch:
            parser.error(f"'{path}' holds a '{built}' network, not {arch}")
        check_can_write(Path(args.output_dir) / f"{arch}_v2.safetensors", overwrite=args.overwrite)
        packages[arch] = path
    for arch, text in FAMILIES.items():
        package = load_model_package(packages[arch])
        meta = carried_metadata(package.metadata)
        meta.pop("default", None)
        meta["name"] = f"{arch}_v2"
        hardware = trained_how(package.metadata.get("training") or {})
        meta["description"] = (f"{text}, for liver and liver-tumor segmentation of abdominal CT; the default v2 "
                               f"recipe (scripts/default_model_v2.yaml) on 3 real CT patients"
                               f"{', ' + hardware if hardware else ''}. For architecture comparison; the default "
                               f"model is the 24-384 U-Net. Research use only; not a medical device.")
        meta["validation"] = {
            "method": "architecture comparison at an equal budget: every family (this one and the 24-384 U-Net) "
                      f"trained with the same recipe for {steps_text} (arch_<architecture>.log) without patient "
                      "ts_dicom20 (leave-one-patient-out fold 0), then "
                      + measured + ". These are the fold models' numbers, not this package's (which saw all 3 "
                      "patients).",
            "held_out_patient": "ts_dicom20",
            "all_architectures": [dict(architecture=name, **row) for name, row in sorted(table.items())],
        }
        if arch in table:  # top-level numbers are what `livertumorseg models` prints
            for key in ("dice_liver", "dice_tumor_synthetic", "dice_tumor_whole_volume"):
                if key in table[arch]:
                    meta["validation"]["fold0_" + key] = table[arch][key]
        meta["training"] = dict(meta.get("training", {}))
        meta["training"]["data_description"] = (
            "3 real abdominal CT patients with liver labels: TotalSegmentator example CTs (Apache-2.0; liver labels "
            "are TotalSegmentator predictions) 512x512x20 at 0.98 mm and 122x101x112 at 3 mm, and the dcmqi 3-slice "
            "GE CT (BSD-style) at 0.81 mm; synthetic tumors and vessels inserted on the fly.")
        if hardware:  # as the package records it: the text of the v2 round's H100 run went into any package
            meta["training"]["hardware"] = hardware
        out = Path(args.output_dir) / f"{arch}_v2.safetensors"
        save_model_package(out, package.model, package.preprocessing, meta, overwrite=args.overwrite,
                           weights_storage="float16")
        load_model_package(out)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); held-out liver Dice at equal budget: "
              f"{(table.get(arch) or {}).get('dice_liver')}")
    return 0


if __name__ == "__main__":
    from LiverTumorSegLib.cli import run_script

    sys.exit(run_script(main))
