"""Shared helpers for the inference tests: an "oracle" package whose per-batch predictor thresholds the
windowed HU input (so its output is known exactly), re-oriented phantom copies, and a tiny real U-Net package.
"""
import types
from typing import Sequence, Tuple

import numpy as np

from LiverTumorSegLib.phantom import PhantomLesion, make_phantom
from LiverTumorSegLib.volume import CTVolume, ImageGeometry

# Window 0..100 HU -> [0, 1]: lesion 15 HU -> 0.15, liver 60 HU -> 0.60, muscle 45 -> 0.45, fat/air -> 0.
ORACLE_WINDOW = {"kind": "window", "level": 50.0, "width": 100.0}


def oracle_config():
    from LiverTumorSegLib.preprocessing import PreprocessingConfig

    return PreprocessingConfig(channels=[dict(ORACLE_WINDOW)], context_slices=0, target_spacing_mm=None,
                               size_multiple=1, crop_to_body=False)


def oracle_predictor(x_nchw: np.ndarray) -> np.ndarray:
    """(n, 1, H, W) windowed HU -> one-hot probabilities (n, 3, H, W): tumor 0.1..0.3, liver 0.55..0.65."""
    v = x_nchw[:, 0]
    tumor = (v > 0.10) & (v < 0.30)
    liver = (v > 0.55) & (v < 0.65)
    probs = np.zeros((x_nchw.shape[0], 3) + v.shape[1:], dtype=np.float32)
    probs[:, 2] = tumor
    probs[:, 1] = liver & ~tumor
    probs[:, 0] = ~(liver | tumor)
    return probs


def oracle_package():
    return types.SimpleNamespace(preprocessing=oracle_config(), model=None, name="oracle")


def corner_phantom(shape_zyx=(12, 40, 44), spacing_xyz=(2.0, 2.5, 4.0)):
    """Noise-free phantom with one lesion near the liver's (low z, low y, low x) corner."""
    lesion = PhantomLesion(center_zyx=(3.0, 12.0, 10.0), radius_mm=5.0, hu=15.0)
    return make_phantom(shape_zyx, spacing_xyz, lesions=[lesion], noise_hu=0.0, origin=(-40.0, 20.0, 100.0))


def reoriented(volume: CTVolume, labels: np.ndarray, source_axis: Sequence[int], flip: Sequence[bool]
               ) -> Tuple[CTVolume, np.ndarray]:
    """The same physical image stored differently: new array axis n = old axis ``source_axis[n]``, reversed
    where ``flip[n]``. Every voxel keeps its physical (LPS) position; ``labels`` are moved alike."""
    def move(a):
        out = a.transpose(tuple(source_axis))
        return np.ascontiguousarray(out[tuple(slice(None, None, -1) if f else slice(None) for f in flip)])

    new_shape = move(volume.array).shape
    # 4x4 matrix: new (i, j, k, 1) -> old (i, j, k, 1); array axis n <-> index axis 2 - n
    m = np.zeros((4, 4))
    m[3, 3] = 1.0
    for n in range(3):
        old_axis, new_axis = 2 - source_axis[n], 2 - n
        if flip[n]:
            m[old_axis, new_axis] = -1.0
            m[old_axis, 3] = new_shape[n] - 1
        else:
            m[old_axis, new_axis] = 1.0
    affine = volume.geometry.ijk_to_lps() @ m
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    geometry = ImageGeometry(spacing=tuple(spacing), origin=tuple(affine[:3, 3]),
                             direction=tuple((affine[:3, :3] / spacing).ravel()))
    return CTVolume(array=move(volume.array), geometry=geometry, source="reoriented"), move(labels)


def stored_flipped(array_zyx: np.ndarray, geometry: ImageGeometry, axis_zyx: int) -> Tuple[np.ndarray, ImageGeometry]:
    """``(array, geometry)``: the same image stored with array axis ``axis_zyx`` reversed (a correct header: every
    voxel keeps its LPS position)."""
    index_axis = 2 - axis_zyx
    far = [0, 0, 0]
    far[index_axis] = array_zyx.shape[axis_zyx] - 1
    direction = geometry.direction_matrix.copy()
    direction[:, index_axis] *= -1
    return (np.ascontiguousarray(np.flip(array_zyx, axis_zyx)),
            ImageGeometry(spacing=geometry.spacing, origin=tuple(geometry.index_to_lps(far)),
                          direction=tuple(direction.ravel())))


def stored_flipped_case(hu_zyx: np.ndarray, labels_zyx: np.ndarray, geometry: ImageGeometry,
                        axes_zyx: Sequence[int]) -> Tuple[np.ndarray, np.ndarray, ImageGeometry]:
    """``(hu, labels, geometry)``: a CT and its labels stored with each array axis of ``axes_zyx`` reversed
    (:func:`stored_flipped`, one after another)."""
    for axis in axes_zyx:
        hu_zyx, flipped = stored_flipped(hu_zyx, geometry, axis)
        labels_zyx, _ = stored_flipped(labels_zyx, geometry, axis)
        geometry = flipped
    return hu_zyx, labels_zyx, geometry


ORIENTATIONS = {
    "LPS": ((0, 1, 2), (False, False, False)),
    "RAS": ((0, 1, 2), (False, True, True)),
    "permuted": ((2, 0, 1), (True, False, True)),
    "sagittal-like": ((2, 1, 0), (False, True, False)),
}


def tiny_unet_package(tmp_path, context_slices=0, name="tiny.safetensors"):
    """A saved-and-loaded untrained U-Net package (channels 4, 8, 16) with a small preprocessing config."""
    import torch

    from LiverTumorSegLib.models import build_model
    from LiverTumorSegLib.package import load_model_package, save_model_package
    from LiverTumorSegLib.preprocessing import PreprocessingConfig

    torch.manual_seed(0)
    cfg = PreprocessingConfig(channels=[{"kind": "window", "level": 40.0, "width": 400.0}],
                              context_slices=context_slices, target_spacing_mm=3.0, size_multiple=8,
                              crop_to_body=True)
    model = build_model("unet", in_channels=cfg.in_channels, num_classes=3, channels=(4, 8, 16), strides=(2, 2))
    path = save_model_package(tmp_path / name, model, cfg, metadata={"name": "tiny"})
    return load_model_package(path)


def without_nifti_orientation(source, target):
    """Copy the NIfTI ``source`` to ``target`` with sform and qform codes 0 (no orientation: tools disagree on
    where to place it); returns ``target``."""
    import nibabel as nib

    image = nib.load(str(source))
    bare = nib.Nifti1Image(np.asanyarray(image.dataobj), None, image.header.copy())
    bare.set_sform(None, code=0)
    bare.set_qform(None, code=0)
    nib.save(bare, str(target))
    return target


class HUThresholdEngine:
    """An engine stand-in for ``Segmenter(engine=...)``: 60 +- 15 HU is liver, 10 +- 15 HU tumor, every tumor voxel at
    tumor probability ``tumor_probability`` (uint8 255ths; 100 is an uncertain lesion, 230 a sure one)."""

    def __init__(self, tumor_probability):
        self.package = types.SimpleNamespace(metadata={}, name="stand-in", path="stand-in")
        self.tumor_probability = int(tumor_probability)

    def predict(self, volume, progress=None, cancel=None):
        hu = np.asarray(volume.array, dtype=np.float32)
        labels = (np.abs(hu - 60.0) < 15.0).astype(np.uint8)
        labels[np.abs(hu - 10.0) < 15.0] = 2
        return labels

    def predict_with_probability(self, volume, progress=None, cancel=None, probability_everywhere=True, **kwargs):
        labels = self.predict(volume)
        return labels, np.where(labels == 2, self.tumor_probability, 0).astype(np.uint8)
