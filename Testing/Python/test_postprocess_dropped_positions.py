"""Every tumor post-processing takes away is findable from the JSON report: a separate liver part the
largest-component step drops (``liver_components_removed``) carries its centroid and its tumor's, and the tumor the
lung-base and air steps remove is listed per connected piece with its volume and centroid
(``tumor_above_lungs_components``, ``tumor_in_air_components``). Before, these gave mL only: a tumor lying in a
dropped part, or above the lung bases, disappeared without a position. Labels do not change: records are added."""
import json

import numpy as np
import pytest

from LiverTumorSegLib.inference.postprocess import PostprocessingOptions, postprocess_labels
from LiverTumorSegLib.volume import CTVolume, ImageGeometry
from inference_helpers import HUThresholdEngine

# (x, y, z) spacing 0.7 / 0.8 / 2.5 mm; the j axis runs toward anterior (flipped), so post-processing works on a
# canonical view with its own box offsets: LPS x = -120.5 + 0.7 i, y = 85.25 - 0.8 j, z = -310 + 2.5 k
SPACING_XYZ = (0.7, 0.8, 2.5)
ORIGIN = (-120.5, 85.25, -310.0)
FLIPPED = ImageGeometry(spacing=SPACING_XYZ, origin=ORIGIN, direction=(1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
VOXEL_ML = 0.7 * 0.8 * 2.5 / 1000.0


def _lps(k, j, i):
    """Hand-computed LPS mm of index (k, j, i) of FLIPPED."""
    return [-120.5 + 0.7 * i, 85.25 - 0.8 * j, -310.0 + 2.5 * k]


def _ras(k, j, i):
    x, y, z = _lps(k, j, i)
    return [-x, -y, z]


def _two_liver_parts():
    """(20, 40, 60): the kept liver, a part 2 voxels apart along i holding a tumor, and a small part with none."""
    labels = np.zeros((20, 40, 60), dtype=np.uint8)
    labels[2:18, 5:35, 5:38] = 1          # kept: 15,840 voxels
    labels[2:18, 5:35, 40:55] = 1         # dropped: 7,200 voxels, centre k 9.5, j 19.5, i 47
    labels[8:12, 15:20, 45:50] = 2        # its tumor: 100 voxels, centre k 9.5, j 17, i 47
    labels[2:6, 37:40, 5:10] = 1          # dropped, no tumor: 60 voxels, centre k 3.5, j 38, i 7
    return labels


def test_a_dropped_liver_part_gives_where_it_and_its_tumor_lay():
    labels = _two_liver_parts()
    changes = {}
    out = postprocess_labels(labels, FLIPPED.spacing[::-1], PostprocessingOptions(min_lesion_ml=0),
                             geometry=FLIPPED, changes=changes)
    assert not out[:, :, 40:].any() and not out[:, 37:].any()
    with_tumor, without = changes["liver_components_removed"]          # largest first, as before
    assert with_tumor["volume_ml"] == pytest.approx(7200 * VOXEL_ML) and \
        with_tumor["tumor_ml"] == pytest.approx(100 * VOXEL_ML)
    assert with_tumor["centroid_lps_mm"] == pytest.approx(_lps(9.5, 19.5, 47), abs=1e-9)
    assert with_tumor["centroid_ras_mm"] == pytest.approx(_ras(9.5, 19.5, 47), abs=1e-9)
    assert with_tumor["tumor_centroid_lps_mm"] == pytest.approx(_lps(9.5, 17, 47), abs=1e-9)
    assert with_tumor["tumor_centroid_ras_mm"] == pytest.approx(_ras(9.5, 17, 47), abs=1e-9)
    assert without["volume_ml"] == pytest.approx(60 * VOXEL_ML) and without["tumor_ml"] == 0.0
    assert without["centroid_lps_mm"] == pytest.approx(_lps(3.5, 38, 7), abs=1e-9)
    assert without["tumor_centroid_lps_mm"] is None and without["tumor_centroid_ras_mm"] is None
    json.dumps(changes)  # plain floats and None: the JSON report takes them


def test_without_geometry_a_dropped_part_keeps_its_old_record_and_labels_do_not_change():
    labels = _two_liver_parts()
    with_geometry, without_geometry = {}, {}
    located = postprocess_labels(labels, FLIPPED.spacing[::-1], PostprocessingOptions(min_lesion_ml=0),
                                 geometry=FLIPPED, changes=with_geometry)
    plain = postprocess_labels(labels, FLIPPED.spacing[::-1], PostprocessingOptions(min_lesion_ml=0),
                               changes=without_geometry)
    assert np.array_equal(located, plain)
    assert without_geometry["liver_components_removed"] == [
        {"volume_ml": pytest.approx(7200 * VOXEL_ML), "tumor_ml": pytest.approx(100 * VOXEL_ML)},
        {"volume_ml": pytest.approx(60 * VOXEL_ML), "tumor_ml": 0.0}]
    for old, new in zip(without_geometry["liver_components_removed"], with_geometry["liver_components_removed"]):
        assert {key: new[key] for key in old} == old     # the existing keys, their values unchanged


def test_a_dropped_tumor_centroid_is_the_lesion_reports_on_an_oblique_permuted_grid():
    """i runs toward P turned 20 degrees, j toward -L: the canonical view swaps and flips axes."""
    from LiverTumorSegLib.inference.lesion_report import lesion_report

    angle = np.radians(20.0)
    c, s = np.cos(angle), np.sin(angle)
    # direction columns (i, j, k axes in LPS): i ~ P, j ~ -L, k = S
    turned = ImageGeometry(spacing=(0.9, 0.6, 3.0), origin=(10.0, -20.0, 30.0),
                           direction=(-s, -c, 0.0, c, -s, 0.0, 0.0, 0.0, 1.0))
    labels = _two_liver_parts()
    changes = {}
    postprocess_labels(labels, turned.spacing[::-1], PostprocessingOptions(min_lesion_ml=0), geometry=turned,
                       changes=changes)
    record = changes["liver_components_removed"][0]
    only_that_tumor = np.where(labels == 2, 2, 1).astype(np.uint8) * (labels >= 1)
    (lesion,) = lesion_report(only_that_tumor, turned)["lesions"]
    assert record["tumor_centroid_lps_mm"] == pytest.approx(lesion["centroid_lps_mm"], abs=1e-9)
    assert record["tumor_centroid_ras_mm"] == pytest.approx(lesion["centroid_ras_mm"], abs=1e-9)
    assert record["centroid_lps_mm"] == pytest.approx(list(turned.index_to_lps((47.0, 19.5, 9.5))), abs=1e-9)


# ---------------------------------------------------------------------------------------------- air step

def _air_phantom():
    """(12, 30, 30) HU and labels as stored for FLIPPED: the network's liver runs into 4 air slices (0-3) within
    the body's outline, with tumor there in two pieces on slices 1 and 3 (not touching: a slice between)."""
    hu = np.full((12, 30, 30), -1000, np.int16)
    hu[4:12, 5:25, 5:25] = 60
    hu[:4, 2:28, 2:28] = 40
    hu[:4, 5:25, 5:25] = -1000
    labels = np.zeros(hu.shape, np.uint8)
    labels[:, 5:25, 5:25] = 1
    labels[1, 10:14, 10:14] = 2        # 16 voxels, centre k 1, j 11.5, i 11.5
    labels[3, 20:22, 6:9] = 2          # 6 voxels, centre k 3, j 20.5, i 7
    labels[6:10, 8:16, 8:16] = 2       # a real tumor, kept
    return hu, labels


def test_tumor_removed_in_air_is_listed_per_piece_with_its_centroid():
    hu, labels = _air_phantom()
    changes = {}
    out = postprocess_labels(labels, FLIPPED.spacing[::-1], PostprocessingOptions(min_lesion_ml=0), hu_zyx=hu,
                             geometry=FLIPPED, changes=changes)
    assert not out[:4].any()
    assert changes["tumor_in_air_ml"] == pytest.approx(22 * VOXEL_ML)          # the total, as before
    large, small = changes["tumor_in_air_components"]
    assert large["volume_ml"] == pytest.approx(16 * VOXEL_ML) and small["volume_ml"] == pytest.approx(6 * VOXEL_ML)
    assert large["centroid_lps_mm"] == pytest.approx(_lps(1, 11.5, 11.5), abs=1e-9)
    assert large["centroid_ras_mm"] == pytest.approx(_ras(1, 11.5, 11.5), abs=1e-9)
    assert small["centroid_lps_mm"] == pytest.approx(_lps(3, 20.5, 7), abs=1e-9)
    assert changes["tumor_above_lungs_components"] == []
    json.dumps(changes)


def test_without_geometry_the_air_pieces_give_their_volume_only():
    hu, labels = _air_phantom()
    changes = {}
    postprocess_labels(labels, FLIPPED.spacing[::-1], PostprocessingOptions(min_lesion_ml=0), hu_zyx=hu,
                       changes=changes)
    assert changes["tumor_in_air_components"] == [{"volume_ml": pytest.approx(16 * VOXEL_ML)},
                                                  {"volume_ml": pytest.approx(6 * VOXEL_ML)}]


def test_a_piece_removed_across_two_blocks_of_the_air_step_is_one_record():
    """The air step reads ``chunk`` slices at a time; a piece on slices 1-2 with chunk 2 lies in two blocks."""
    from LiverTumorSegLib.inference.postprocess import remove_organ_in_air, removed_tumor_components

    hu, labels = _air_phantom()
    labels[2, 10:14, 10:14] = 2        # the slice-1 piece now spans slices 1-2: 32 voxels, centre k 1.5
    at = []
    organ, tumor = remove_organ_in_air(labels, hu, chunk=2, removed_tumor_at=at)
    assert tumor == 38 and len(at) == 2
    (joined, small) = removed_tumor_components(at, 1.0)
    assert joined == {"volume_ml": 32.0} and small == {"volume_ml": 6.0}
    located = removed_tumor_components(at, 1.0, FLIPPED)
    assert located[0]["centroid_lps_mm"] == pytest.approx(_lps(1.5, 11.5, 11.5), abs=1e-9)


def test_removed_tumor_components_of_nothing_is_empty():
    from LiverTumorSegLib.inference.postprocess import removed_tumor_components

    assert removed_tumor_components([], 1.0, FLIPPED) == []
    assert removed_tumor_components([np.zeros((0, 3), np.int64)], 1.0) == []


# ------------------------------------------------------------------------------------------ lung-base step

CHEST_SPACING = (5.0, 4.0, 4.0)   # (z, y, x) mm of the canonical chest phantom


def _chest():
    """test_postprocess's chest phantom, canonical (z superior, x toward the left, y toward posterior)."""
    from test_postprocess import chest_phantom

    return chest_phantom()


def test_tumor_removed_above_the_lung_bases_is_listed_per_piece_with_its_centroid():
    """The phantom stored with i toward the right and j toward anterior (both flipped): two tumor pieces in the
    heart (soft tissue: the air step leaves them), the network's liver below, removed by the lung-base step."""
    hu, parts = _chest()
    predicted = parts["liver"].astype(np.uint8)
    predicted[25:28, 18:22, 31:35] = 2      # in the heart: 48 voxels, canonical centre k 26, j 19.5, i 32.5
    predicted[30:32, 30:32, 33:35] = 2      # higher in it: 8 voxels, centre k 30.5, j 30.5, i 33.5
    origin = (100.0, 50.0, -200.0)
    stored = ImageGeometry(spacing=CHEST_SPACING[::-1], origin=origin,
                           direction=(-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    changes = {}
    out = postprocess_labels(predicted[:, ::-1, ::-1], CHEST_SPACING, PostprocessingOptions(min_lesion_ml=0),
                             hu_zyx=hu[:, ::-1, ::-1], geometry=stored, changes=changes)
    assert not (out[:, ::-1, ::-1] == 2).any()
    assert changes["tumor_above_lungs_ml"] == pytest.approx(56 * 0.08)        # the total, as before
    large, small = changes["tumor_above_lungs_components"]
    assert large["volume_ml"] == pytest.approx(48 * 0.08) and small["volume_ml"] == pytest.approx(8 * 0.08)

    def lps(k, jc, ic):  # canonical index -> stored (i = 63 - ic, j = 63 - jc) -> LPS, by hand
        return [100.0 - 4.0 * (63 - ic), 50.0 - 4.0 * (63 - jc), -200.0 + 5.0 * k]

    assert large["centroid_lps_mm"] == pytest.approx(lps(26, 19.5, 32.5), abs=1e-9)
    assert small["centroid_lps_mm"] == pytest.approx(lps(30.5, 30.5, 33.5), abs=1e-9)
    x, y, z = lps(26, 19.5, 32.5)
    assert large["centroid_ras_mm"] == pytest.approx([-x, -y, z], abs=1e-9)


# ------------------------------------------------------------------------------------------ segment's report


def test_segment_files_json_report_says_where_a_dropped_part_and_its_tumor_lay(tmp_path):
    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import Segmenter
    from LiverTumorSegLib.io import write_volume

    labels = _two_liver_parts()
    hu = np.full(labels.shape, -1000, dtype=np.int16)
    hu[:, 2:38, 2:58] = 40                 # body
    hu[labels == 1] = 60
    hu[labels == 2] = 10
    ct = write_volume(tmp_path / "ct.nii.gz", CTVolume(hu, FLIPPED))
    segmenter = Segmenter(SegmentationOptions(body_size_scaling=False), engine=HUThresholdEngine(230))
    segmenter.segment_file(ct, tmp_path / "seg.nii.gz", report_path=tmp_path / "report.json")
    written = json.loads((tmp_path / "report.json").read_text())
    with_tumor = written["postprocessing_changes"]["liver_components_removed"][0]
    assert with_tumor["tumor_ml"] == pytest.approx(100 * VOXEL_ML, rel=1e-6)
    assert with_tumor["centroid_lps_mm"] == pytest.approx(_lps(9.5, 19.5, 47), abs=1e-4)
    assert with_tumor["tumor_centroid_lps_mm"] == pytest.approx(_lps(9.5, 17, 47), abs=1e-4)
    assert with_tumor["tumor_centroid_ras_mm"] == pytest.approx(_ras(9.5, 17, 47), abs=1e-4)
    assert written["postprocessing_changes"]["tumor_in_air_components"] == []


def test_scattered_removed_tumor_is_grouped_without_a_box_of_the_whole_scan():
    """Two tumor specks on every one of 100 slices, at opposite corners of a 512 x 512 plane (air the network
    called tumor on both sides of the body): a bounding box of each run of slices was 100 x 508 x 508 voxels, labelled
    in int32 (135 MiB and 2.3 s for 200 voxels; 655 MiB for a 500-slice CT). The pieces are found from the voxels
    alone: the same two records, in a few MiB."""
    import tracemalloc

    from LiverTumorSegLib.inference.postprocess import removed_tumor_components

    z = np.arange(100)
    near = np.stack([z, np.full(100, 2), np.full(100, 2)], axis=1)
    far = np.stack([z, np.full(100, 509), np.full(100, 509)], axis=1)
    tracemalloc.start()
    try:
        records = removed_tumor_components([near, far], 0.5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2 ** 20
    assert [r["volume_ml"] for r in records] == [50.0, 50.0]  # equal sizes: raster order of the first voxel
    # 26-connected pieces: a diagonal step joins, a gap of one voxel along z or in-plane splits
    diagonal = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 0]])
    split = np.array([[5, 0, 0], [7, 0, 0], [9, 3, 3], [9, 5, 3]])
    assert [r["volume_ml"] for r in removed_tumor_components([diagonal, split], 1.0)] == [3.0, 1.0, 1.0, 1.0, 1.0]
