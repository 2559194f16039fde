"""Make the README's lesion-table and follow-up example from SYNTHETIC data (the phantom of
LiverTumorSegLib.phantom; no patient data): a baseline and a follow-up label map + CT, the follow-up scan
displaced by (12, -8, 10) mm, one lesion grown, one shrunk, one vanished and one new.

    python docs/examples/make_followup_example.py [OUT_DIR] [--update-docs-picture]   # default: a temporary folder

Runs ``livertumorseg measure`` and ``livertumorseg followup`` on the files it writes (``OUT_DIR/baseline_report.json``,
``OUT_DIR/change.json`` and ``change.png``), prints the lesion table and the follow-up summary as Markdown and, with
``--update-docs-picture``, copies the picture to docs/images/followup_example.png (the README's; without it a user's
run left the checkout changed).
"""
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from LiverTumorSegLib.cli import main
from LiverTumorSegLib.io import write_label_map, write_volume
from LiverTumorSegLib.phantom import PhantomLesion, make_phantom

SHAPE, SPACING, ORIGIN = (28, 96, 96), (1.6, 1.6, 4.0), np.array([-80.0, -60.0, 60.0])


def write_case(folder: Path, name: str, lesions, origin, seed):
    phantom = make_phantom(SHAPE, SPACING, lesions=lesions, noise_hu=6.0, origin=tuple(origin), seed=seed)
    labels = write_label_map(folder / f"{name}_seg.nii.gz", phantom.labels, phantom.ct.geometry, overwrite=True)
    ct = write_volume(folder / f"{name}_ct.nii.gz", phantom.ct, overwrite=True)
    return labels, ct


def main_example(out: Path, update_docs_picture: bool = False) -> None:
    base = [PhantomLesion((14, 34, 22), 9.0, 15.0), PhantomLesion((12, 44, 34), 8.0, 20.0),
            PhantomLesion((17, 30, 36), 6.0, 18.0)]
    follow = [PhantomLesion((14, 34, 22), 13.0, 15.0), PhantomLesion((12, 44, 34), 4.5, 20.0),
              PhantomLesion((9, 30, 42), 5.0, 18.0)]
    base_seg, base_ct = write_case(out, "baseline", base, ORIGIN, 0)
    follow_seg, follow_ct = write_case(out, "followup", follow, ORIGIN + [12.0, -8.0, 10.0], 1)
    main(["measure", str(base_seg), "--ct", str(base_ct), "-o", str(out / "baseline_report.json"), "--overwrite"])
    report = json.loads((out / "baseline_report.json").read_text())
    print("\n| lesion | volume mL | long axis mm | short axis mm | RECIST target | mean HU |\n|---|---|---|---|---|---|")
    for d in report["lesions"]:
        print(f"| {d['id']} | {d['volume_ml']:.2f} | {d['long_axis_mm']:.1f} | {d['short_axis_mm']:.1f} | "
              f"{'yes' if d['recist_target'] else 'no'} | {d['mean_hu']:.0f} |")
    print(f"\nsum of diameters: {report['recist']['sum_of_diameters_mm']:.1f} mm\n")
    main(["followup", "--baseline", str(base_seg), "--followup", str(follow_seg), "--baseline-ct", str(base_ct),
          "--followup-ct", str(follow_ct), "-o", str(out / "change.json"), "--overwrite",
          "--title", "SYNTHETIC phantom"])
    if update_docs_picture:
        target = Path(__file__).resolve().parents[1] / "images" / "followup_example.png"
        shutil.copyfile(out / "change.png", target)
        print(f"picture copied to {target}")


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if a != "--update-docs-picture"]
    update = len(arguments) < len(sys.argv) - 1
    if arguments:
        folder = Path(arguments[0])
        folder.mkdir(parents=True, exist_ok=True)
        main_example(folder, update)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main_example(Path(tmp), update)
