"""Lesion report: volumes, diameters, centroids (RAS and LPS), HU, burden; JSON and CSV files."""
import json

import numpy as np
import pytest

from LiverTumorSegLib.errors import InputError, OutputExistsError
from LiverTumorSegLib.inference.lesion_report import (axial_axis_zyx, lesion_report, longest_axial_diameter_mm,
                                                      max_pairwise_distance, write_report)
from LiverTumorSegLib.phantom import PhantomLesion, make_phantom
from LiverTumorSegLib.volume import ImageGeometry

from inference_helpers import ORIENTATIONS, reoriented


def two_lesion_phantom():
    lesions = [PhantomLesion(center_zyx=(10.0, 28.0, 18.0), radius_mm=8.0, hu=15.0),
               PhantomLesion(center_zyx=(10.0, 36.0, 34.0), radius_mm=4.0, hu=20.0)]
    return make_phantom((20, 80, 80), (1.0, 1.0, 2.0), lesions=lesions, noise_hu=0.0, origin=(-50.0, -30.0, 10.0))


def test_max_pairwise_distance_known():
    pts = np.array([[0, 0], [3, 4], [1, 1]], float)
    assert max_pairwise_distance(pts) == pytest.approx(5.0)
    ring = np.stack([np.cos(np.linspace(0, 2 * np.pi, 200)), np.sin(np.linspace(0, 2 * np.pi, 200))], 1) * 7
    assert max_pairwise_distance(ring) == pytest.approx(14.0, abs=1e-3)


def test_axial_axis_for_permuted_geometry():
    assert axial_axis_zyx(ImageGeometry(spacing=(1, 1, 1))) == 0
    # index axis i (array axis 2) points superior
    g = ImageGeometry(spacing=(1, 1, 1), direction=(0, 1, 0, 0, 0, 1, 1, 0, 0))
    assert axial_axis_zyx(g) == 2


def test_lesions_are_measured_across_the_axis_the_network_slices_also_at_a_45_degree_tie():
    """A grid tilted by exactly 45 degrees about the left-right axis has two index axes equally close to head-foot;
    the network slices across the one plan_reorientation assigns to S, and the lesions must be measured in those
    slices (the largest cosine alone took the other: 31.5 x 27.7 against 31.3 x 29.7 mm for the same voxels stored
    without the tilt). Random rotations: the two always agree."""
    from scipy.spatial.transform import Rotation

    from LiverTumorSegLib.orientation import plan_reorientation

    c = np.sqrt(0.5)
    tie = ImageGeometry(spacing=(1, 1, 1), direction=(-1, 0, 0, 0, -c, c, 0, c, c))
    assert axial_axis_zyx(tie) == plan_reorientation(tie, (8, 8, 8)).source_axis[0] == 0
    rng = np.random.default_rng(3)
    for matrix in Rotation.random(200, random_state=rng).as_matrix():
        for signs in ((1, 1, 1), (1, -1, 1), (-1, 1, -1)):
            geometry = ImageGeometry(spacing=(1, 1, 1), direction=tuple((matrix * signs).ravel()))
            assert axial_axis_zyx(geometry) == plan_reorientation(geometry, (8, 8, 8)).source_axis[0]


def test_diameter_of_square_in_slice():
    mask = np.zeros((3, 10, 10), bool)
    mask[1, 2:6, 3:7] = True  # 4 x 4 pixels, centres span 3 x 3 pixels
    g = ImageGeometry(spacing=(0.5, 2.0, 5.0))
    assert longest_axial_diameter_mm(mask, g) == pytest.approx(np.hypot(3 * 0.5, 3 * 2.0))


@pytest.mark.parametrize("orientation", ["LPS", "RAS", "permuted"])
def test_report_matches_phantom_lesions(orientation):
    ph = two_lesion_phantom()
    volume, labels = reoriented(ph.ct, ph.labels, *ORIENTATIONS[orientation])
    report = lesion_report(labels, volume.geometry, volume.array)
    assert report["lesion_count"] == 2
    assert report["liver_volume_ml"] == pytest.approx(ph.liver_volume_ml)
    truth = sorted(ph.lesions, key=lambda l: -l.volume_ml)
    for lesion, true in zip(report["lesions"], truth):
        assert lesion["volume_ml"] == pytest.approx(true.volume_ml)
        # sphere: 2r minus at most ~one in-plane voxel (voxel-centre measurement)
        assert 2 * true.radius_mm - 2.5 <= lesion["longest_axial_diameter_mm"] <= 2 * true.radius_mm + 1e-6
        cz, cy, cx = true.center_zyx
        centre_lps = ph.ct.geometry.index_to_lps((cx, cy, cz))
        np.testing.assert_allclose(lesion["centroid_lps_mm"], centre_lps, atol=1.0)
        ras = np.array(lesion["centroid_ras_mm"])
        np.testing.assert_allclose(ras, np.array(lesion["centroid_lps_mm"]) * [-1, -1, 1])
        assert lesion["mean_hu"] == pytest.approx(true.hu)
    assert report["lesions"][0]["id"] == 1
    burden = 100 * sum(l.volume_ml for l in ph.lesions) / ph.liver_volume_ml
    assert report["tumor_burden_percent"] == pytest.approx(burden)


def test_report_without_ct_and_shape_check():
    labels = np.zeros((2, 3, 3), np.uint8)
    labels[0, 0, 0] = 2
    report = lesion_report(labels, ImageGeometry(spacing=(10, 10, 10)))
    assert report["lesions"][0]["mean_hu"] is None and report["liver_volume_ml"] == pytest.approx(1.0)
    with pytest.raises(InputError):
        lesion_report(labels, ImageGeometry(spacing=(1, 1, 1)), np.zeros((1, 1, 1)))


def test_write_json_and_csv(tmp_path):
    ph = two_lesion_phantom()
    report = lesion_report(ph.labels, ph.ct.geometry, ph.ct.array)
    path = write_report(report, tmp_path / "r.json")
    loaded = json.loads(path.read_text())
    assert loaded["lesion_count"] == 2 and len(loaded["lesions"][0]["centroid_ras_mm"]) == 3
    csv_text = write_report(report, tmp_path / "r.csv").read_text().splitlines()
    assert not any(line.startswith("#") for line in csv_text)  # plain CSV: the header is the first line
    header = csv_text[0]
    assert header.startswith("id,volume_ml") and len([l for l in csv_text if l[:1].isdigit()]) == 2
    with pytest.raises(OutputExistsError):
        write_report(report, tmp_path / "r.json")
    with pytest.raises(InputError, match=".json or .csv"):
        write_report(report, tmp_path / "r.txt")


def test_longest_axial_diameter_of_a_large_slice_blob_is_fast_and_exact(monkeypatch):
    """A 300x300-voxel square in one slice (90,000 coplanar points) must not build a pairwise matrix:
    its diagonal is sqrt(2) * 299 voxels * 0.5 mm. Checked by the points the pairwise step is given and the
    memory allocated (the old pairwise path needed ~650 GB), not by a time, which a slow CI machine exceeds."""
    import importlib
    import tracemalloc

    from LiverTumorSegLib.volume import ImageGeometry

    mask = np.zeros((3, 320, 320), dtype=bool)
    mask[1, 10:310, 10:310] = True
    geometry = ImageGeometry(spacing=(0.5, 0.5, 2.0))
    # the module (LiverTumorSegLib.inference.lesion_report, the package attribute of that name, is a function)
    lesion_report = importlib.import_module("LiverTumorSegLib.inference.lesion_report")
    pairwise_sizes = []
    real_farthest_pair = lesion_report.farthest_pair

    def counted_farthest_pair(points):
        pairwise_sizes.append(len(points))
        return real_farthest_pair(points)

    monkeypatch.setattr(lesion_report, "farthest_pair", counted_farthest_pair)
    tracemalloc.start()
    try:
        d = lesion_report.longest_axial_diameter_mm(mask, geometry)
        peak_bytes = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert abs(d - np.sqrt(2) * 299 * 0.5) < 1e-6
    assert pairwise_sizes and max(pairwise_sizes) <= 64  # the hull's corners, not the 90,000 points
    assert peak_bytes < 64 << 20, f"{peak_bytes / 2 ** 20:.0f} MiB"  # the voxel indices (~2 MiB each) only


def test_longest_axial_diameter_of_a_collinear_row():
    from LiverTumorSegLib.inference.lesion_report import longest_axial_diameter_mm
    from LiverTumorSegLib.volume import ImageGeometry

    mask = np.zeros((1, 4, 200), dtype=bool)
    mask[0, 2, 5:105] = True  # 100 voxels in a row, 99 gaps of 0.7 mm
    assert abs(longest_axial_diameter_mm(mask, ImageGeometry(spacing=(0.7, 0.7, 3.0))) - 99 * 0.7) < 1e-9


def _full_volume_components(labels, geometry=None):
    """The definition: 26-connected components of label 2 over the whole volume, numbered by decreasing size
    (ties: scan order of the first voxel; with ``geometry``: superior, then right, then anterior first)."""
    from scipy import ndimage
    components, count = ndimage.label(labels == 2, structure=np.ones((3, 3, 3), dtype=bool))
    sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
    keys = [(-int(sizes[n]), n) for n in range(count)]
    if geometry is not None:
        for n in range(count):
            kji = np.argwhere(components == n + 1).mean(axis=0)
            lps = np.round(geometry.index_to_lps(kji[::-1]), 3)
            keys[n] = (-int(sizes[n]), -lps[2], lps[0], lps[1])
    order = sorted(range(count), key=lambda n: keys[n])
    relabel = np.zeros(count + 1, dtype=np.int32)
    relabel[np.asarray(order, dtype=np.int64) + 1] = np.arange(1, count + 1, dtype=np.int32)
    return relabel[components], count


@pytest.mark.parametrize("seed", range(6))
def test_lesion_components_equal_a_whole_volume_labelling(seed):
    from LiverTumorSegLib.inference.lesion_report import lesion_components
    rng = np.random.default_rng(seed)
    labels = (rng.random((12, 20, 24)) < 0.5).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.06] = 2          # many small lesions, equal sizes (ties), at the borders too
    labels[0, 0, 0] = labels[-1, -1, -1] = 2               # the bounding box reaches every face
    expected, count = _full_volume_components(labels)
    ids, n = lesion_components(labels)
    assert n == count > 5 and ids.dtype == np.int32 and np.array_equal(ids, expected)
    inner = np.zeros_like(labels)                         # lesions only in the middle: a small bounding box
    inner[4:7, 8:11, 5:9] = labels[4:7, 8:11, 5:9]
    expected, count = _full_volume_components(inner)
    ids, n = lesion_components(inner)
    assert n == count and np.array_equal(ids, expected)


@pytest.mark.parametrize("seed", range(3))
def test_report_lesions_match_whole_volume_components(seed):
    """The report labels the tumors' bounding box only; its lesions (id, voxels, box, mean HU and probability)
    must be those of a whole-volume labelling, wherever the box lies."""
    from scipy import ndimage
    rng = np.random.default_rng(100 + seed)
    labels = (rng.random((12, 20, 24)) < 0.5).astype(np.uint8)
    labels[3:9, 5:15, 6:20][rng.random((6, 10, 14)) < 0.08] = 2       # lesions away from the volume's faces
    hu = rng.integers(-100, 200, labels.shape).astype(np.int16)
    probability = rng.integers(0, 256, labels.shape).astype(np.uint8)
    geometry = ImageGeometry(spacing=(0.8, 0.9, 2.5))
    expected, count = _full_volume_components(labels, geometry)
    report = lesion_report(labels, geometry, hu, tumor_probability_zyx=probability)
    assert report["lesion_count"] == count > 5
    for lesion, box in zip(report["lesions"], ndimage.find_objects(expected)):
        mask = expected[box] == lesion["id"]
        assert lesion["bounding_box_zyx"] == [[b.start, b.stop] for b in box]
        assert lesion["voxel_count"] == int(mask.sum())
        assert lesion["mean_hu"] == pytest.approx(float(hu[box][mask].mean()), abs=1e-9)
        assert lesion["mean_tumor_probability"] == pytest.approx(float(probability[box][mask].mean()) / 255, abs=1e-12)


def test_lesion_components_of_a_tumor_free_map():
    from LiverTumorSegLib.inference.lesion_report import lesion_components
    ids, n = lesion_components(np.ones((3, 4, 5), dtype=np.uint8))
    assert n == 0 and ids.shape == (3, 4, 5) and ids.dtype == np.int32 and not ids.any()


def test_equal_lesions_are_numbered_by_position_not_by_storage_order():
    # two identical lesions: "Lesion 1" was the first in the array's scan order, so the same CT stored LPS or RAS
    # named a different lesion "Lesion 1"; now the superior one, then the patient's right one, comes first
    from LiverTumorSegLib.inference.lesion_report import lesion_components

    labels = np.zeros((12, 20, 40), dtype=np.uint8)
    labels[4:7, 8:11, 5:8] = 2     # x index small
    labels[4:7, 8:11, 30:33] = 2   # x index large, same size and height
    labels[1:3, 2:4, 18:20] = 2    # a smaller one
    for flip_x in (False, True):
        direction = np.diag([-1.0 if flip_x else 1.0, 1.0, 1.0])  # flip_x: the x index runs toward the right
        geometry = ImageGeometry(spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0), direction=tuple(direction.ravel()))
        report = lesion_report(labels, geometry)
        first = report["lesions"][0]
        assert report["lesions"][0]["volume_ml"] == report["lesions"][1]["volume_ml"]
        assert first["centroid_ras_mm"][0] > report["lesions"][1]["centroid_ras_mm"][0]  # the right one (R > 0)
        ids, _ = lesion_components(labels, geometry)
        assert ids[5, 9, 31 if not flip_x else 6] == 2 and ids[5, 9, 6 if not flip_x else 31] == 1
        assert report["lesions"][2]["voxel_count"] == 8
    z_order = np.zeros((12, 8, 8), dtype=np.uint8)
    z_order[1:3, 2:4, 2:4] = 2
    z_order[8:10, 2:4, 2:4] = 2
    report = lesion_report(z_order, ImageGeometry(spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0)))
    assert report["lesions"][0]["centroid_ras_mm"][2] > report["lesions"][1]["centroid_ras_mm"][2]  # superior first


def test_each_lesion_says_its_axial_slice_and_whether_the_scan_cuts_it():
    # a reader goes to a lesion by its slice position (the S on Slicer's slice slider), and a lesion cut by the
    # first or last slice has a size that is only a lower bound
    import csv
    import io

    from LiverTumorSegLib.inference.lesion_report import report_to_csv_text

    labels = np.zeros((12, 30, 30), dtype=np.uint8)
    labels[:, 2:28, 2:28] = 1
    labels[4:7, 5:12, 5:12] = 2          # slices 4-6, equal in every slice: measured on the middle one (index 5)
    labels[0:2, 18:22, 18:22] = 2        # starts at the scan's first slice
    geometry = ImageGeometry(spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 10.0))
    report = lesion_report(labels, geometry)
    inner, cut = sorted(report["lesions"], key=lambda d: d["touches_scan_edge"])
    assert inner["axial_position_s_mm"] == pytest.approx(10.0 + 5 * 2.0) and not inner["touches_scan_edge"]
    assert cut["touches_scan_edge"] and cut["axial_position_s_mm"] in (pytest.approx(10.0), pytest.approx(12.0))
    rows = list(csv.DictReader(io.StringIO(report_to_csv_text(report))))
    assert {r["touches_scan_edge"] for r in rows} == {"0", "1"}
    assert {r["axial_position_s_mm"] for r in rows} >= {"20.0"}
    assert "research use" in rows[0]["note"]              # the JSON's disclaimer is in the spreadsheet too


def test_a_lesion_cut_by_the_scanners_circular_field_of_view_is_cut_by_the_scans_edge():
    """A lesion at the edge of the reconstruction circle (the CT holds -3024 padding outside it, as GE writes it) is
    cut as by the array's edge, but was reported as whole (touches_scan_edge false) and chosen as the RECIST target,
    its long axis a lower bound. With the CT it is now cut; a lesion kept off the padding, or without a CT, is not."""
    size = 60
    yy, xx = np.mgrid[0:size, 0:size]
    radius = np.hypot(yy - 29.5, xx - 29.5)
    ct = np.where(radius <= 28.0, 60, -3024).astype(np.int16)[None].repeat(8, axis=0)  # circle: 1..58 along x
    labels = np.zeros(ct.shape, dtype=np.uint8)
    labels[1:7][:, radius <= 28.0] = 1
    block = (np.abs(yy - 29.5) <= 10) & (xx <= 16)
    labels[2:6][:, block & (radius <= 28.0)] = 2                # up to the circle: beside the padding
    geometry = ImageGeometry(spacing=(0.7, 0.7, 5.0))
    assert not (ct[labels == 2] < -1500).any()
    (lesion,) = lesion_report(labels, geometry, ct)["lesions"]
    assert lesion["long_axis_mm"] > 10.0 and lesion["mean_hu"] == pytest.approx(60.0)
    assert lesion["touches_scan_edge"] and not lesion["recist_target"]
    (lesion,) = lesion_report(labels, geometry)["lesions"]      # no CT: the field of view is not known
    assert not lesion["touches_scan_edge"] and lesion["recist_target"]
    inner = np.where(labels >= 1, 1, 0).astype(np.uint8)
    inner[2:6][:, block & (radius <= 26.5)] = 2                 # its face neighbours lie within 27.5: no padding
    (lesion,) = lesion_report(inner, geometry, ct)["lesions"]
    assert not lesion["touches_scan_edge"] and lesion["recist_target"]


def test_on_a_slightly_tilted_grid_the_axes_lie_in_the_tilted_image_slice_as_docs_say():
    """docs/report_format.md: on a grid tilted up to 5 degrees the axes are measured in the tilted image slice (not a
    true axial plane; over 5 degrees in true axial planes, test_recist_edge_cases) and axial_position_s_mm is the S
    of the long axis' middle. A row of 21 voxels of 1 mm along the tilted j axis (4 degrees about x): long axis
    20 + 1 = 21 mm in the slice, end points 10.5 mm either side of the row's centre along j."""
    tilt = np.deg2rad(4.0)
    j_axis = np.array([0.0, np.cos(tilt), np.sin(tilt)])          # LPS; k (the slice normal) = i x j
    k_axis = np.cross([1.0, 0.0, 0.0], j_axis)
    direction = np.stack([[1.0, 0.0, 0.0], j_axis, k_axis], axis=1)  # columns: i, j, k
    geometry = ImageGeometry(spacing=(1.0, 1.0, 5.0), origin=(0.0, 0.0, 100.0), direction=tuple(direction.ravel()))
    labels = np.zeros((5, 40, 20), dtype=np.uint8)
    labels[1:4, 5:35, 2:18] = 1
    labels[2, 10:31, 10] = 2                                       # slice k = 2, rows j = 10..30, column i = 10
    (lesion,) = lesion_report(labels, geometry)["lesions"]
    assert lesion["long_axis_mm"] == pytest.approx(21.0) and lesion["short_axis_mm"] == pytest.approx(1.0)
    centre = np.asarray(geometry.origin) + direction @ np.array([10.0, 20.0, 2 * 5.0])  # LPS of (i, j, k) = (10, 20, 2)
    ends = np.asarray(lesion["long_axis"]["end_points_lps_mm"])
    assert np.allclose(sorted(np.linalg.norm(ends - centre, axis=1)), [10.5, 10.5])
    assert np.allclose(np.cross(ends[1] - ends[0], j_axis), 0.0, atol=1e-9)      # along the tilted j axis
    assert lesion["axial_position_s_mm"] == pytest.approx(centre[2])              # the long axis' middle
    assert lesion["axial_position_s_mm"] == pytest.approx(100.0 + 20 * np.sin(tilt) + 2 * 5.0 * np.cos(tilt))


def test_csv_cells_of_missing_or_non_finite_numbers_are_empty():
    """The JSON report writes null for a non-finite number; the CSV wrote the text 'nan'."""
    from LiverTumorSegLib.inference.lesion_report import _number
    assert _number(float("nan"), 3) == "" and _number(None, 3) == "" and _number(float("inf"), 1) == ""
    assert _number(1.23456, 3) == "1.235"


def test_a_sheared_or_unscaled_geometry_is_refused_not_measured():
    """A 20 degree gantry-tilt shear built in memory (the readers refuse one) measured every voxel 1/cos 20 = 6.4 %
    too large (the product of the spacings, where the true voxel volume is the sheared cell's determinant). A
    direction whose axes carry the spacing put every diameter off by that factor."""
    labels = np.zeros((4, 8, 8), np.uint8)
    labels[1:3, 2:6, 2:6] = 2
    tilt = np.deg2rad(20.0)
    affine = np.eye(4)
    affine[:3, :3] = [[0.7, 0.0, 0.0], [0.0, 1.3, 2.5 * np.tan(tilt)], [0.0, 0.0, 2.5]]
    sheared = ImageGeometry.from_ijk_to_ras(affine)
    assert sheared.spacing[2] == pytest.approx(2.5 / np.cos(tilt))  # what the product of spacings would have used
    with pytest.raises(InputError, match="sheared"):
        lesion_report(labels, sheared)
    with pytest.raises(InputError, match="not unit vectors"):
        lesion_report(labels, ImageGeometry(spacing=(1.0, 1.0, 1.0), direction=(0.7, 0, 0, 0, 1.3, 0, 0, 0, 2.5)))
    square = ImageGeometry(spacing=(0.7, 1.3, 2.5), direction=(0, -1, 0, 1, 0, 0, 0, 0, 1))  # rotated, not sheared
    report = lesion_report(labels, square)
    assert report["tumor_volume_ml"] == pytest.approx(32 * 0.7 * 1.3 * 2.5 / 1000)


def test_the_report_states_the_grid_it_measured_on(tmp_path):
    """Volumes and axes depend on pixel size and slice spacing, which a report did not state (only one voxel's
    volume): it now gives the grid as the label map is stored, also for a flipped storage of the same anatomy."""
    ph = two_lesion_phantom()
    report = lesion_report(ph.labels, ph.ct.geometry, ph.ct.array)
    assert report["grid"] == {"size_xyz": [80, 80, 20], "spacing_mm": [1.0, 1.0, 2.0],
                              "origin_lps_mm": [-50.0, -30.0, 10.0], "direction": [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]}
    flipped = ImageGeometry(spacing=(1.0, 1.0, 2.0), origin=(29.0, -30.0, 10.0), direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1))
    other = lesion_report(ph.labels[:, :, ::-1], flipped, ph.ct.array[:, :, ::-1])
    assert other["grid"]["origin_lps_mm"] == [29.0, -30.0, 10.0] and other["grid"]["direction"][0] == -1.0
    assert other["liver_volume_ml"] == report["liver_volume_ml"]
    # a DICOM input's float noise is not stated: 2.9999999999999996 mm and -0.0 read 3.0 and 0.0
    noisy = ImageGeometry(spacing=(1.0, 1.0, 2.9999999999999996), origin=(-0.0, 0.1 + 0.2, 10.0),
                          direction=(1, -0.0, 0, 0, 1, 0, 0, 0, 1))
    grid = lesion_report(ph.labels, noisy)["grid"]
    assert grid["spacing_mm"] == [1.0, 1.0, 3.0] and grid["origin_lps_mm"] == [0.0, 0.3, 10.0]
    assert "-0.0" not in json.dumps(grid)
    header = write_report(report, tmp_path / "r.csv").read_text().splitlines()[0].split(",")
    assert "grid" not in header  # a JSON fact; the CSV keeps its columns


def test_a_lesions_mean_hu_leaves_out_the_scanners_padding():
    """A hand-drawn lesion of 40 HU reaching the padding outside the field of view (-3024) read a mean of -471 HU; the
    padding is no tissue and is now left out (the lesion is still flagged as cut by the scan's edge)."""
    ct = np.full((5, 20, 20), 40, np.int16)
    ct[:, :, :3] = -3024
    labels = np.zeros(ct.shape, np.uint8)
    labels[1:4, 2:18, 3:18] = 1
    labels[2, 8:12, 2:8] = 2  # 4 x 6 voxels, 4 x 1 of them on the padding
    lesion = lesion_report(labels, ImageGeometry(spacing=(0.7, 0.7, 5.0)), ct)["lesions"][0]
    assert lesion["mean_hu"] == pytest.approx(40.0) and lesion["touches_scan_edge"]
    labels[2, 8:12, 0:3] = 2  # and a lesion wholly on padding has no mean HU
    labels[2, 8:12, 3:8] = 1
    assert lesion_report(labels, ImageGeometry(spacing=(0.7, 0.7, 5.0)), ct)["lesions"][0]["mean_hu"] is None


def test_longest_axial_diameter_on_a_tilted_grid_is_the_reports():
    """The public helper measured in the stored slices on every grid, while the report measures in true axial planes
    on a grid tilted more than 5 degrees: a 30 x 20 x 12 mm ellipsoid on 1 mm voxels tilted 45 degrees about P read
    19.4 mm from the helper and 30.0 mm in the report's longest_axial_diameter_mm."""
    t = np.deg2rad(45.0)
    direction = np.array([[np.cos(t), 0.0, np.sin(t)], [0.0, 1.0, 0.0], [-np.sin(t), 0.0, np.cos(t)]])
    n = 50
    geometry = ImageGeometry(spacing=(1.0, 1.0, 1.0), direction=tuple(direction.ravel()))
    k, j, i = np.meshgrid(*[np.arange(n)] * 3, indexing="ij")
    ijk = np.stack([i, j, k], -1).reshape(-1, 3).astype(float)
    lps = ijk @ direction.T - np.asarray(geometry.index_to_lps([n / 2 - 0.5] * 3))
    labels = np.zeros((n, n, n), np.uint8)
    labels[1:-1, 1:-1, 1:-1] = 1
    labels.reshape(-1)[(lps[:, 0] / 15) ** 2 + (lps[:, 1] / 10) ** 2 + (lps[:, 2] / 6) ** 2 <= 1] = 2
    (lesion,) = lesion_report(labels, geometry)["lesions"]
    assert lesion["longest_axial_diameter_mm"] == pytest.approx(30.0, abs=1.0)  # about the ellipsoid's 30 mm
    assert longest_axial_diameter_mm(labels == 2, geometry) == pytest.approx(lesion["longest_axial_diameter_mm"])
