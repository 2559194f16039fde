"""Head-foot order read from the lungs (inference/head_foot.py): a header with head and foot swapped is warned of
and keeps its liver, where the lung-base rule removed most of it."""
from pathlib import Path

import numpy as np
import pytest

from LiverTumorSegLib.inference.head_foot import (CENTRES_BELOW_MARGIN_MM, LUNGS_BELOW_MARGIN_MM, head_foot_order,
                                                  head_foot_warnings)
from LiverTumorSegLib.inference.postprocess import PostprocessingOptions, postprocess_labels
from LiverTumorSegLib.volume import CTVolume, ImageGeometry

from test_postprocess import CHEST_SPACING, chest_phantom

DATA = Path(__file__).resolve().parents[1] / "Data"
# LPS directions (columns i, j, k): the phantom's x to the patient's left, y to the back, z to the head; the
# swapped header says its slices run from head to feet (k toward I)
HEAD_UP = ImageGeometry(spacing=CHEST_SPACING[::-1])
FEET_UP = ImageGeometry(spacing=CHEST_SPACING[::-1], origin=(0.0, 0.0, 39 * CHEST_SPACING[0]),
                        direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0))


def _slab(first, last, shape=(40, 8, 8)):
    mask = np.zeros(shape, bool)
    mask[first:last + 1] = True
    return mask


def test_order_is_read_from_the_tops_and_centres_in_mm():
    # lungs in slices 10-19, organ in 0-12 (5 mm): tops (the slice under which 90 % lie) 18 and 11, median slices
    # 14 and 6: the lungs 35 mm higher at the top and 40 mm at the centre, the right order
    right = head_foot_order(_slab(10, 19), _slab(0, 12), (5.0, 1.0, 1.0), organ_ml=1500.0)
    assert right == {"judged": True, "lungs_below_liver": False, "lung_top_below_liver_top_mm": -35.0,
                     "lung_centre_below_liver_centre_mm": -40.0}
    # the same swapped (z -> 39 - z): lungs 20-29 (top 28, median 24), organ 27-39 (top 38, median 33)
    swapped = head_foot_order(_slab(20, 29), _slab(27, 39), (5.0, 1.0, 1.0), organ_ml=1500.0)
    assert swapped["lungs_below_liver"] and swapped["lung_top_below_liver_top_mm"] == 50.0
    assert swapped["lung_centre_below_liver_centre_mm"] == 45.0


def test_a_few_false_liver_voxels_far_up_do_not_make_the_order_reversed():
    # a whole-body CT: 1 % of the 'liver' on a far false positive in the head (the largest-part step comes later)
    lungs, organ = _slab(60, 79, (120, 10, 10)), _slab(20, 59, (120, 10, 10))
    organ[118, 0, 0:4] = True                            # 4 voxels against 4000
    order = head_foot_order(lungs, organ, (5.0, 1.0, 1.0), 1500.0)
    assert not order["lungs_below_liver"] and order["lung_top_below_liver_top_mm"] == -105.0   # tops 56 and 77


def test_both_the_top_and_the_centre_must_lie_a_margin_lower():
    assert LUNGS_BELOW_MARGIN_MM == 20.0 and CENTRES_BELOW_MARGIN_MM == 40.0   # 4 and 8 slices of 5 mm
    # tops (19, 23) and median slices (15, 19) 4 slices apart: at the margin, called swapped
    assert head_foot_order(_slab(10, 20), _slab(14, 24), (5.0, 1.0, 1.0), 1500.0)["lungs_below_liver"]
    # tops 3 slices apart (19, 22; centres 11 and 18, 35 mm): not called
    assert not head_foot_order(_slab(2, 20), _slab(14, 23), (5.0, 1.0, 1.0), 1500.0)["lungs_below_liver"]
    # tops 40 mm apart (19, 27), centres level (15, 15: an organ reaching far above and below short lungs): not called
    assert not head_foot_order(_slab(10, 20), _slab(0, 30), (5.0, 1.0, 1.0), 1500.0)["lungs_below_liver"]
    # tops 10 mm apart (26, 28), centres 50 mm (14, 24): the centres alone decide (a flipped chest CT that ends in
    # the upper liver: the lungs' lowest part lies beside the liver's cut end)
    cut = head_foot_order(_slab(0, 29), _slab(20, 29), (5.0, 1.0, 1.0), 1500.0)
    assert cut["lungs_below_liver"] and cut["lung_top_below_liver_top_mm"] == 10.0
    assert cut["lung_centre_below_liver_centre_mm"] == 50.0


def test_no_lung_or_a_small_liver_is_not_judged():
    assert head_foot_order(None, _slab(0, 5), (5.0, 1.0, 1.0), 1500.0) == {"judged": False,
                                                                           "why": "no lung in the scan"}
    assert head_foot_order(_slab(20, 29), _slab(27, 39), (5.0, 1.0, 1.0), organ_ml=49.0)["judged"] is False
    assert head_foot_warnings(None) == [] and head_foot_warnings({"judged": False, "why": "x"}) == []


def _chest_labels():
    hu, parts = chest_phantom()
    labels = parts["liver"].astype(np.uint8)
    labels[parts["heart"]] = 1                        # the network's error: the heart called liver
    return hu, labels, parts


def test_a_ct_stored_head_up_keeps_the_lung_base_rule_and_no_orientation_word():
    hu, labels, parts = _chest_labels()
    changes = {}
    out = postprocess_labels(labels, CHEST_SPACING, PostprocessingOptions(min_lesion_ml=0), hu_zyx=hu,
                             geometry=HEAD_UP, changes=changes)
    order = changes["head_foot_order"]
    assert order["judged"] and not order["lungs_below_liver"]
    assert order["lung_top_below_liver_top_mm"] < 0 and order["lung_centre_below_liver_centre_mm"] < 0
    assert changes["liver_above_lungs_ml"] > 0 and (out[parts["heart"]] == 0).any()   # the heart went
    assert head_foot_warnings(order) == []


@pytest.mark.parametrize("how", ["array", "header"])
def test_head_and_foot_swapped_are_warned_of_and_the_liver_kept(how):
    # "array": the slices stored in the other order under a head-up header; "header": the same voxels under a
    # header that says the first slice is the top. Before, the lungs were found under the liver and the lung-base
    # rule removed most of it (a warning then named a flip as one possible cause)
    hu, labels, parts = _chest_labels()
    if how == "array":
        hu, labels, liver, geometry = hu[::-1].copy(), labels[::-1].copy(), parts["liver"][::-1], HEAD_UP
    else:
        liver, geometry = parts["liver"], FEET_UP
    changes = {}
    out = postprocess_labels(labels, CHEST_SPACING, PostprocessingOptions(min_lesion_ml=0), hu_zyx=hu,
                             geometry=geometry, changes=changes)
    order = changes["head_foot_order"]
    assert order["lungs_below_liver"] and order["lung_top_below_liver_top_mm"] >= LUNGS_BELOW_MARGIN_MM
    assert changes["liver_above_lungs_ml"] == 0.0 and (out[liver] == 1).all()
    (warning,) = head_foot_warnings(order)
    assert warning.startswith("Implausible orientation: the lungs lie below the liver along the file's head-foot")
    assert "S position in the report is mirrored" in warning and "was not applied" in warning
    # the check runs with the rules off too
    off = {}
    postprocess_labels(labels, CHEST_SPACING, PostprocessingOptions.disabled(), hu_zyx=hu, geometry=geometry,
                       changes=off)
    assert off["head_foot_order"] == order


def test_segment_warns_of_the_swapped_header_first():
    from LiverTumorSegLib.inference.options import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import NetworkOutput, Segmenter

    hu, labels, _ = _chest_labels()
    result = Segmenter(SegmentationOptions()).finish(
        CTVolume(hu, FEET_UP), NetworkOutput(labels=labels, probability=np.zeros(labels.shape, np.uint8),
                                             facts={"device": "cpu"}, timings={}))
    assert result.warnings[0].startswith("Implausible orientation: the lungs lie below the liver")
    assert result.report["postprocessing_changes"]["head_foot_order"]["lungs_below_liver"] is True
    assert len(result.warnings) == 1   # no "post-processing removed ... above the lung bases"
    upright = Segmenter(SegmentationOptions()).finish(
        CTVolume(hu, HEAD_UP), NetworkOutput(labels=labels, probability=np.zeros(labels.shape, np.uint8),
                                             facts={"device": "cpu"}, timings={}))
    assert not any("lungs lie below" in w for w in upright.warnings)


def test_real_ct_with_lungs_beside_its_liver_is_judged_in_order_and_one_without_lungs_not_judged():
    from LiverTumorSegLib.io import read_label_map, read_volume

    ct3 = read_volume(DATA / "ct3slice_ct.nii.gz")             # lung bases in the liver's three slices
    truth = read_label_map(DATA / "ct3slice_liver_seg.nii.gz", reference=ct3).array
    changes = {}
    postprocess_labels(truth, ct3.spacing_zyx, PostprocessingOptions(), hu_zyx=ct3.array, geometry=ct3.geometry,
                       changes=changes)
    assert changes["head_foot_order"]["judged"] and not changes["head_foot_order"]["lungs_below_liver"]
    sm = read_volume(DATA / "example_ct_sm.nii.gz")            # abdomen from inside the liver down: no lung
    liver = read_label_map(DATA / "example_ct_sm_liver.nii.gz", reference=sm).array
    changes = {}
    postprocess_labels(liver, sm.spacing_zyx, PostprocessingOptions(), hu_zyx=sm.array, geometry=sm.geometry,
                       changes=changes)
    assert changes["head_foot_order"] == {"judged": False, "why": "no lung in the scan"}
    assert postprocess_labels(liver, sm.spacing_zyx, PostprocessingOptions(), changes=changes) is not None
    assert changes["head_foot_order"] == {"judged": False, "why": "no CT in HU with its geometry given"}


def test_no_lung_found_where_the_field_of_view_cuts_the_chest_is_not_called_a_scan_without_lung():
    """The 3-slice CT through the lung bases, cropped to its central 60 % left to right (the lungs then reach the
    image's sides, as the air outside the body does): no lung is found, and the report said "no lung in the scan"
    of a scan that holds both lung bases; it now says that the body reaches the image's sides."""
    from LiverTumorSegLib.io import read_label_map, read_volume
    from LiverTumorSegLib.inference.head_foot import NO_LUNG_FOUND_SIDES_CUT_WHY

    ct3 = read_volume(DATA / "ct3slice_ct.nii.gz")
    truth = read_label_map(DATA / "ct3slice_liver_seg.nii.gz", reference=ct3).array
    nx = ct3.array.shape[2]
    cut = slice(int(nx * 0.2), int(nx * 0.8))
    changes = {}
    postprocess_labels(np.ascontiguousarray(truth[:, :, cut]), ct3.spacing_zyx, PostprocessingOptions(),
                       hu_zyx=np.ascontiguousarray(ct3.array[:, :, cut]), geometry=ct3.geometry, changes=changes)
    assert changes["head_foot_order"] == {"judged": False, "why": NO_LUNG_FOUND_SIDES_CUT_WHY}
