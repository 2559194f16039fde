"""``contrast_to_liver_hu``: each lesion's median HU minus that of the predicted liver 2-6 mm outside it, so a reader
can sort the lesions by it. Fold models' false lesions inside the liver of example_ct_dicom20 (no real tumor) read
-10 to -6.5 HU against the liver beside them; the benchmark's synthetic tumors mostly 15 HU or more
(benchmarks/lesion_contrast_analysis.py). Reported only: no lesion is removed or relabelled by it."""
import csv
import io

import numpy as np
import pytest

from LiverTumorSegLib.inference.lesion_report import lesion_report, report_to_csv_text
from LiverTumorSegLib.inference.water_density import CONTRAST_MIN_SHELL_VOXELS, CONTRAST_SHELL_MM
from LiverTumorSegLib.volume import ImageGeometry


def _ball(shape, centre, radius_voxels):
    z, y, x = np.ogrid[tuple(slice(0, n) for n in shape)]
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius_voxels ** 2


def _report(labels, hu, spacing_xyz=(1.0, 1.0, 1.0), **kwargs):
    return lesion_report(labels, ImageGeometry(spacing=spacing_xyz), hu, **kwargs)


def _lesion_in_liver(lesion_hu=40.0, liver_hu=100.0, shape=(24, 32, 32)):
    """A ball of ``lesion_hu`` (radius 5 voxels, label 2) in a box of liver of ``liver_hu`` (label 1), -100 HU
    outside; no noise."""
    labels = np.zeros(shape, dtype=np.uint8)
    labels[2:-2, 2:-2, 2:-2] = 1
    hu = np.full(shape, -100.0, dtype=np.float32)
    hu[labels == 1] = liver_hu
    ball = _ball(shape, (12, 16, 16), 5)
    labels[ball], hu[ball] = 2, lesion_hu
    return labels, hu


def test_a_lesion_of_40_hu_in_a_liver_of_100_hu_has_a_contrast_of_minus_60():
    labels, hu = _lesion_in_liver(40.0, 100.0)
    (lesion,) = _report(labels, hu)["lesions"]
    assert lesion["contrast_to_liver_hu"] == pytest.approx(-60.0, abs=1e-6)
    labels, hu = _lesion_in_liver(130.0, 100.0)  # hyperdense: positive
    assert _report(labels, hu)["lesions"][0]["contrast_to_liver_hu"] == pytest.approx(30.0, abs=1e-6)


def test_the_contrast_compares_with_the_liver_2_to_6_mm_away_in_true_voxel_sizes():
    """5 mm slices: the liver one slice above and below the lesion (5 mm) is beside it, two slices away (10 mm) is
    not; 1 mm pixels: in-plane rings 3-6 mm out are, 7 mm out not. The far liver is set to 1000 HU: any of it in the
    shell would move the median."""
    shape = (9, 40, 40)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[:, 2:-2, 2:-2] = 1
    hu = np.full(shape, 100.0, dtype=np.float32)
    lesion = np.zeros(shape, dtype=bool)
    lesion[4, 15:25, 15:25] = True
    labels[lesion], hu[lesion] = 2, 40.0
    hu[[0, 1, 2, 6, 7, 8]] = 1000.0  # 10 mm or more above or below the lesion
    ring = np.zeros(shape, dtype=bool)
    ring[3:6, 8:32, 8:32] = True
    ring[3:6, 9:31, 9:31] = False  # 7 mm out in-plane (and diagonally farther): outside the 6 mm shell
    hu[ring] = 1000.0
    assert CONTRAST_SHELL_MM == (2.0, 6.0)
    (found,) = _report(labels, hu, spacing_xyz=(1.0, 1.0, 5.0))["lesions"]
    assert found["contrast_to_liver_hu"] == pytest.approx(-60.0, abs=1e-6)


def test_a_lesion_at_the_livers_edge_with_few_liver_voxels_beside_it_has_no_contrast():
    """A lesion in fat with a sliver of liver beside it: fewer than 20 liver voxels 2-6 mm away give None; the same
    lesion with a larger piece of liver gets a number."""
    shape = (16, 24, 24)
    labels = np.zeros(shape, dtype=np.uint8)
    hu = np.full(shape, -100.0, dtype=np.float32)
    ball = _ball(shape, (8, 12, 12), 3)
    labels[ball], hu[ball] = 2, 40.0
    sliver = (slice(7, 9), slice(12, 14), slice(17, 20))  # 2 x 2 x 3 = 12 voxels, 2-6 mm from the ball
    labels[sliver], hu[sliver] = 1, 100.0
    assert 12 < CONTRAST_MIN_SHELL_VOXELS
    (lesion,) = _report(labels, hu)["lesions"]
    assert lesion["contrast_to_liver_hu"] is None
    piece = (slice(6, 10), slice(10, 15), slice(17, 20))  # 4 x 5 x 3 = 60 voxels, within 6 mm of the ball
    labels[piece], hu[piece] = 1, 100.0
    (lesion,) = _report(labels, hu)["lesions"]
    assert lesion["contrast_to_liver_hu"] == pytest.approx(-60.0, abs=1e-6)


def test_no_contrast_without_a_ct_in_hu_and_the_csv_carries_it():
    labels, hu = _lesion_in_liver(40.0, 100.0)
    assert _report(labels, None)["lesions"][0]["contrast_to_liver_hu"] is None
    assert _report(labels, hu, in_hu=False)["lesions"][0]["contrast_to_liver_hu"] is None
    row, = csv.DictReader(io.StringIO(report_to_csv_text(_report(labels, hu))))
    assert row["contrast_to_liver_hu"] == "-60.0"
    row, = csv.DictReader(io.StringIO(report_to_csv_text(_report(labels, None))))
    assert row["contrast_to_liver_hu"] == ""


def test_the_contrast_removes_or_relabels_nothing():
    """A false-looking lesion (5 HU darker than its liver) stays a lesion with its whole volume."""
    labels, hu = _lesion_in_liver(95.0, 100.0)
    report = _report(labels, hu)
    (lesion,) = report["lesions"]
    assert lesion["contrast_to_liver_hu"] == pytest.approx(-5.0, abs=1e-6)
    assert report["lesion_count"] == 1 and lesion["voxel_count"] == int(np.count_nonzero(labels == 2))
