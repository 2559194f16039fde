"""Probe (issue 11, stop 76): why a fold network leaves out part of a held-out CT's liver (docs/default_model_v9.md).

    python scripts/left_lobe_probe.py --ct CT.nii.gz --ref LIVER.nii.gz MODEL_A.safetensors MODEL_B.safetensors

The region is the largest piece of the reference liver that the LAST model leaves out, farther than 3 px from the
liver's border. Each row perturbs the CT (that region's HU, the liver's half that holds it, the whole liver's HU, the
in-plane pixel size the network is told) and prints each model's liver Dice (labels > 0 against the reference, fp32,
before post-processing) and the share of the region it then finds. Arrays are (z, y, x); the reference is read onto
the CT's grid (read_label_map: its geometry is checked). Run from the repository root with the library importable.
When the last model leaves out no piece deeper than 3 px (every small test CT), there is no region to probe: it
says so and stops (exit 0) instead of failing on an empty argmax. A user error (a missing file) is one ``error:``
line, exit 2.
"""
import argparse
import dataclasses
import sys
from typing import List, Optional

import numpy as np
from scipy import ndimage


def largest_left_out_region(ref: np.ndarray, predicted: np.ndarray) -> Optional[np.ndarray]:
    """The largest connected piece of the reference ``ref`` that ``predicted`` leaves out, farther than 3 px from
    the liver's border in-plane; None when there is none (it was an argmax of an empty sequence)."""
    edge = ref & ~ndimage.binary_erosion(ref, structure=np.ones((1, 7, 7)))
    missed = ref & ~predicted & ~edge
    lab, count = ndimage.label(missed)
    if count == 0:
        return None
    return lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)


def main(argv: Optional[List[str]] = None) -> int:
    """The probe; a user error is one ``error:`` line and exit 2 (:func:`LiverTumorSegLib.cli.run_script`)."""
    from LiverTumorSegLib.cli import run_script

    return run_script(probe, argv)


def probe(argv: Optional[List[str]] = None) -> int:
    from LiverTumorSegLib.io.labels import read_label_map
    from LiverTumorSegLib.io.reading import read_volume
    from LiverTumorSegLib.metrics.overlap import dice
    from LiverTumorSegLib.inference.engine import SliceInferenceEngine, load_package

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ct", required=True); ap.add_argument("--ref", required=True)
    ap.add_argument("models", nargs="+", help="fold packages; the last one defines the left-out region")
    args = ap.parse_args(argv)
    vol = read_volume(args.ct)
    ref = read_label_map(args.ref, reference=vol).array > 0   # liver and tumor, (z, y, x) on the CT's grid
    ct = vol.array.astype(np.float32)
    engines = {m: SliceInferenceEngine(load_package(m), device='cpu', precision='fp32') for m in args.models}
    base_last = engines[args.models[-1]].predict(vol) > 0
    missed = largest_left_out_region(ref, base_last)
    if missed is None:
        print(f"{args.models[-1]} leaves out no part of the reference liver deeper than 3 px from its border "
              f"(liver Dice {dice(base_last, ref):.4f}): there is no left-out region to probe.")
        return 0
    # the liver's voxel-x centre (array x): which half of the liver is the left lobe side (x index toward the patient's left)
    xs = np.nonzero(ref)[2]; mid = (xs.min() + xs.max()) / 2
    mx = np.nonzero(missed)[2].mean()
    left_half = np.zeros_like(ref)
    if mx > mid: left_half[..., int(mid):] = True
    else: left_half[..., :int(mid)] = True
    left_liver = ref & left_half
    print('missed voxels', missed.sum(), 'left-half liver voxels', left_liver.sum(), 'HU median missed / rest of liver',
          np.median(ct[missed]), np.median(ct[ref & ~missed]))
    def vol_with(arr=None, spacing_scale=None):
        v = vol if arr is None else vol.with_array(arr.astype(vol.array.dtype))
        if spacing_scale:
            g = v.geometry; sp = g.spacing
            v = dataclasses.replace(v, geometry=dataclasses.replace(g, spacing=(sp[0] * spacing_scale, sp[1] * spacing_scale, sp[2])))
        return v
    rows = [('baseline', vol_with())]
    for d in (10, 20, 30):
        rows.append((f'missed region +{d} HU', vol_with(np.where(missed, ct + d, ct))))
    rows.append(('left half of liver +20 HU', vol_with(np.where(left_liver, ct + 20, ct))))
    for d in (-20, 20):
        rows.append((f'whole liver {d:+d} HU', vol_with(np.where(ref, ct + d, ct))))
    for sc in (0.8, 0.9, 1.1, 1.25):
        rows.append((f'in-plane spacing x{sc}', vol_with(spacing_scale=sc)))
    for name, v in rows:
        out = []
        for s, e in engines.items():
            p = e.predict(v) > 0
            out.append(f'{s.rsplit("/", 1)[-1]} {dice(p, ref):.4f} (missed-region recall {(p & missed).sum() / missed.sum():.2f})')
        print(f'{name:28s}', ' | '.join(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
