"""The memory a CT's read holds at its peak, and the batch's count of a read ahead (docs/speed.md, memory).

A DICOM series read held 3 copies of its voxels at once: the series reader kept its output alive (its per-slice
tags were still read after the volume was built), so SimpleITK copied the image before numpy copied it again
(measured on a 512 x 512 x 100 series: 6.0 bytes a voxel of int16, 14.0 of int32; now 4.0 and 6.0). A batch
counted a NIfTI read ahead at 4 bytes a voxel whatever its stored type, where a float32 ``.nii.gz`` read peaked at
7.6; it is counted now as the reader's own check counts it (stored voxels + their HU copy)."""
import concurrent.futures
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dicom_helpers import write_ct_series  # noqa: E402


def test_a_dicom_read_lets_the_series_reader_go_before_the_voxels_are_copied(tmp_path, monkeypatch):
    """The image handed to numpy has one owner: with the reader still holding it, SimpleITK copied it first."""
    import LiverTumorSegLib.io.dicom as dicom
    from LiverTumorSegLib.io import read_volume
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    voxels = np.random.default_rng(3).integers(-1000, 1500, size=(5, 24, 32)).astype(np.int16)
    write_ct_series(tmp_path / "ct", CTVolume(voxels, ImageGeometry(spacing=(0.7, 0.8, 2.5))), slice_thickness_mm=3.0)
    unique = []
    original = dicom._volume_from_sitk

    def recording(image, *args, **kwargs):
        unique.append(image.IsUnique())
        return original(image, *args, **kwargs)

    monkeypatch.setattr(dicom, "_volume_from_sitk", recording)
    volume = read_volume(tmp_path / "ct")
    assert unique == [True]
    assert np.array_equal(volume.array, voxels)  # the tags read before are still applied
    assert volume.meta["dicom_slice_thickness_mm"] == pytest.approx(3.0)
    np.testing.assert_allclose(volume.geometry.spacing, (0.7, 0.8, 2.5))


def _write_compressed_ct(path, values_zyx):
    """``values_zyx`` written compressed to ``path``: .nii.gz by nibabel (identity affine), else by SimpleITK."""
    if path.name.endswith(".nii.gz"):
        import nibabel as nib

        nib.save(nib.Nifti1Image(np.ascontiguousarray(values_zyx.T), np.eye(4)), str(path))
    else:
        import SimpleITK as sitk

        sitk.WriteImage(sitk.GetImageFromArray(values_zyx), str(path), True)
    return path


def _numpy_peak(function):
    tracemalloc.start()
    try:
        result = function()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_an_itk_image_becomes_hu_voxels_without_a_full_numpy_copy_of_its_own_type():
    """An int32 image (GDCM's type for a signed 16-bit series with an intercept) was copied to an int32 array and
    then to int16: 6 bytes a voxel of numpy arrays; the int16 copy is made from a view of the image now (2)."""
    import SimpleITK as sitk

    from LiverTumorSegLib.io.itk import _volume_from_sitk

    values = np.random.default_rng(4).integers(-1024, 2000, size=(40, 64, 64)).astype(np.int32)
    image = sitk.GetImageFromArray(values)
    volume, peak = _numpy_peak(lambda: _volume_from_sitk(image, "int32 image"))
    assert volume.array.dtype == np.int16 and np.array_equal(volume.array, values)
    assert peak < 3 * values.size, peak / values.size

    narrow = sitk.GetImageFromArray(values.astype(np.int16))  # int16: the HU array is a copy of its own
    volume, peak = _numpy_peak(lambda: _volume_from_sitk(narrow, "int16 image"))
    assert volume.array.flags.owndata and volume.array.flags.writeable
    assert not np.may_share_memory(volume.array, sitk.GetArrayViewFromImage(narrow))
    assert np.array_equal(volume.array, values)
    assert peak < 3 * values.size, peak / values.size


@pytest.mark.parametrize("dtype, slope, per_voxel", [(np.float32, 1.0, 8), (np.int16, 1.0, 4), (np.int16, 0.5, 8),
                                                     (np.float64, 1.0, 12), (np.uint8, 1.0, 3)])
def test_a_nifti_read_ahead_is_counted_by_its_stored_type_and_hu_copy(tmp_path, dtype, slope, per_voxel):
    """Every NIfTI read ahead was counted at 4 bytes a voxel: a float32 one's read peaked at 7.6."""
    import nibabel as nib

    from LiverTumorSegLib.inference.batch import BatchCase, next_read_bytes

    shape = (10, 12, 6)
    image = nib.Nifti1Image(np.zeros(shape, dtype), np.diag([0.8, 0.8, 2.0, 1.0]))
    image.header.set_data_dtype(dtype)
    image.header.set_slope_inter(slope, 0.0)
    path = tmp_path / "ct.nii"  # uncompressed: a .nii.gz adds its inflating buffers (test below)
    nib.save(image, str(path))
    running = concurrent.futures.Future()  # a read not finished
    case = BatchCase("c", path, tmp_path / "out.nii.gz", tmp_path / "out.json")
    assert next_read_bytes(running, case) == per_voxel * int(np.prod(shape))
    running.set_result(None)
    assert next_read_bytes(running, case) == 0


def test_the_readers_early_copy_counts_the_latest_finish_while_it_runs():
    """The reader's early network-grid copy of the next CT counted the running network only, not the previous case's
    finish (post-processing, report, writing) running beside it on the finishing thread, which the cases' own checks
    count (``finish_memory_bytes``): the copy could be made in the memory that finish was about to take."""
    from LiverTumorSegLib.inference.batch import RunningNetworkMemory

    running = RunningNetworkMemory()
    running.publish(0, 12345)
    finish = concurrent.futures.Future()
    running.finishing(finish, 1000)
    assert running.reserved_before(1) == 12345 + 1000
    finish.set_result(None)
    assert running.reserved_before(1) == 12345  # ended: its memory is in the available memory, or freed
    running.finishing(concurrent.futures.Future(), 7)
    running.close()
    assert running.reserved_before(2) is None  # prepare nothing stays nothing


def _three_phantom_cts(tmp_path):
    """A folder of three phantom CTs of 10, 12 and 14 slices (``.nii.gz``) and each one's voxel count."""
    from LiverTumorSegLib.io import write_volume
    from LiverTumorSegLib.phantom import make_phantom

    cts = tmp_path / "cts"
    cts.mkdir()
    voxels = []
    for i in range(3):
        ct = make_phantom((10 + 2 * i, 36, 40), (2.0, 2.0, 4.0), noise_hu=0.0).ct
        write_volume(cts / f"ct_{i}.nii.gz", ct)
        voxels.append(ct.array.size)
    return cts, voxels


def test_a_batch_tells_the_reader_each_cases_finish_and_its_peak(tmp_path, monkeypatch):
    from LiverTumorSegLib.inference import batch
    from LiverTumorSegLib.inference.engine import SliceInferenceEngine
    from LiverTumorSegLib.inference.segmenter import Segmenter

    from inference_helpers import oracle_package, oracle_predictor

    cts, voxels = _three_phantom_cts(tmp_path)
    told = []
    real = batch.RunningNetworkMemory.finishing

    def finishing(self, future, peak_bytes):
        told.append(peak_bytes)
        return real(self, future, peak_bytes)

    monkeypatch.setattr(batch.RunningNetworkMemory, "finishing", finishing)
    segmenter = Segmenter(engine=SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=4,
                                                      batch_predictor=oracle_predictor))
    statuses = batch.segment_batch(batch.find_cases(cts, tmp_path / "out"), segmenter)
    assert [s.status for s in statuses] == ["done"] * 3, [s.message for s in statuses]
    assert told == [n * batch.FINISH_BYTES_PER_VOXEL + batch.FINISH_FIXED_BYTES for n in voxels]


def _asked_per_voxel(monkeypatch, read):
    """Bytes a voxel the reader's own memory check asked for, less the 4 it counts for the labels and the overhead."""
    import LiverTumorSegLib.validation as validation

    asked = []
    monkeypatch.setattr(validation, "check_memory",
                        lambda required, *args, **kwargs: asked.append(int(required)))
    volume = read()
    assert len(asked) == 1
    return (asked[0] - validation.RUNTIME_OVERHEAD_BYTES) / volume.array.size - 4, volume


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("dtype, per_voxel", [("int16", 4), ("int32", 8), ("float32", 8), ("float64", 12),
                                              ("uint8", 3)])
def test_a_nrrd_or_metaimage_read_counts_its_stored_voxels_and_hu_copy(tmp_path, monkeypatch, suffix, compressed,
                                                                       dtype, per_voxel):
    """The check counted two copies of the stored type: a float64 file 16 bytes a voxel, where the read holds
    SimpleITK's image (or the inflated stream) and its int16/float32 HU copy, made from a view: 10.0 measured raw,
    12.2-12.9 gzip (512 x 512 x 100, docs/speed.md); a uint8 file 2, where its int16 copy alone is 2 (3 held)."""
    import SimpleITK as sitk

    from LiverTumorSegLib.io import read_volume
    from LiverTumorSegLib.io.reading import read_peak_bytes

    values = np.random.default_rng(5).integers(0 if dtype == "uint8" else -1000, 255 if dtype == "uint8" else 1500,
                                               size=(6, 20, 24)).astype(dtype)
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(values), str(path), compressed)
    asked, volume = _asked_per_voxel(monkeypatch, lambda: read_volume(path))
    expected = per_voxel * values.size  # a batch's count of the read ahead, the same
    if compressed:  # at least the inflating peak: the stored voxels, one inflated step twice, the compressed bytes
        from LiverTumorSegLib.io.itk import _compressed_data_bytes

        stored = values.nbytes
        expected = max(expected, stored + 2 * stored + _compressed_data_bytes(path))
    assert read_peak_bytes(path) == expected
    # the reader's own check: the voxels and the labels made later (4), or the read's own peak where more
    assert (asked + 4) * values.size == pytest.approx(max((per_voxel + 4) * values.size, expected))
    assert np.array_equal(volume.array, values)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_a_compressed_read_ahead_counts_the_buffers_it_inflates_through(tmp_path, suffix):
    """A compressed file's read holds, beside the stored voxels, the inflated step (twice: zlib joins its blocks
    into one bytes object) and the compressed bytes read: a 512 x 512 x 20 int16 one allocated 7.6 bytes a voxel
    where a batch counted 4 for the read ahead. Measured here with tracemalloc on a small file."""
    from LiverTumorSegLib.io import read_volume
    from LiverTumorSegLib.io.reading import read_peak_bytes

    rng = np.random.default_rng(11)
    values = rng.integers(-1000, 1500, size=(24, 128, 128)).astype(np.int16)
    path = _write_compressed_ct(tmp_path / f"ct{suffix}", values)
    read_volume(path)  # imports and caches out of the way
    volume, peak = _numpy_peak(lambda: read_volume(path))
    assert np.array_equal(volume.array, values)
    counted = read_peak_bytes(path)
    assert peak > 4 * values.size  # what was counted before: the stored voxels and their (int16) HU copy
    assert peak <= counted + (256 << 10), (peak / values.size, counted / values.size)


def test_inflating_holds_one_step_at_a_time(tmp_path):
    """Each inflated step stayed alive (named) while zlib made the next: 3 steps at once, so a 512 x 512 x 100
    float64 gzip NRRD allocated 16.0 bytes a voxel at its peak (now 13.6)."""
    import gzip

    from LiverTumorSegLib.io.gzip_inflate import inflate_peak_bytes, inflate_range

    data = np.random.default_rng(3).integers(0, 4, size=8 << 20, dtype=np.uint8).tobytes()
    path = tmp_path / "data.gz"
    path.write_bytes(gzip.compress(data, 1))
    step, read_step = 1 << 20, 256 << 10
    out, peak = _numpy_peak(lambda: inflate_range(path, 0, len(data), step=step, read_step=read_step))
    assert out.tobytes() == data
    beside = peak - len(data)
    assert beside <= inflate_peak_bytes(len(data), path.stat().st_size, step, read_step) + (64 << 10), beside


@pytest.mark.parametrize("suffix", [".nii", ".nrrd", ".mha"])
def test_a_uint16_file_is_counted_with_a_float32_hu_copy(tmp_path, suffix):
    """uint16 values above 32767 do not fit int16: the HU copy is float32 (a 512 x 512 x 100 uint16 file peaked
    at 6.0 bytes a voxel), where the check and a batch's read ahead counted 2 + 2."""
    import nibabel as nib
    import SimpleITK as sitk

    from LiverTumorSegLib.io import read_volume
    from LiverTumorSegLib.io.reading import read_peak_bytes

    values = np.random.default_rng(2).integers(30000, 40000, size=(6, 20, 24)).astype(np.uint16)
    path = tmp_path / f"ct{suffix}"
    if suffix == ".nii":
        nib.save(nib.Nifti1Image(np.ascontiguousarray(values.T), np.eye(4)), str(path))
    else:
        sitk.WriteImage(sitk.GetImageFromArray(values), str(path), False)
    volume = read_volume(path)
    assert volume.array.dtype == np.float32  # what the reader made
    assert read_peak_bytes(path) == (2 + 4) * values.size


def test_a_dicom_read_counts_gdcms_voxels_and_the_hu_copy(tmp_path, monkeypatch):
    """A fractional rescale slope makes GDCM read float64: the check counted 16 bytes a voxel (two float64 copies),
    where the read holds GDCM's image and the float32 HU copy made from a view of it (12), as the batch's count of
    a DICOM read ahead (``dicom_folder_read_bytes``) has counted it."""
    import pydicom

    from LiverTumorSegLib.io import read_volume
    from LiverTumorSegLib.io.dicom import dicom_folder_read_bytes
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    voxels = np.random.default_rng(6).integers(-1000, 1500, size=(4, 20, 24)).astype(np.int16)
    files = write_ct_series(tmp_path / "ct", CTVolume(voxels, ImageGeometry(spacing=(0.7, 0.8, 2.5))))
    asked, volume = _asked_per_voxel(monkeypatch, lambda: read_volume(tmp_path / "ct"))
    assert asked == 4  # int16: the image and its copy, as before
    for path in files:
        ds = pydicom.dcmread(str(path))
        ds.RescaleSlope = "0.5"
        ds.save_as(str(path))
    asked, volume = _asked_per_voxel(monkeypatch, lambda: read_volume(tmp_path / "ct"))
    assert volume.array.dtype == np.float32
    np.testing.assert_allclose(volume.array, voxels * 0.5)
    assert asked == 12
    assert dicom_folder_read_bytes(tmp_path / "ct") == 12 * voxels.size


def test_the_readers_early_copy_counts_two_finishes_that_run_one_after_the_other_once():
    """Case i - 1's network has ended and its finish waits for case i - 2's, which runs on the one finishing thread:
    the reader's early copy of case i counted both finishes (their sum), though the second starts only once the
    first has ended and freed its memory; an early copy that fit beside either was dropped."""
    from LiverTumorSegLib.inference.batch import RunningNetworkMemory

    running = RunningNetworkMemory()
    running.publish(0, 5000)  # case 0's network, beside the finish running: both count
    earlier = concurrent.futures.Future()
    running.finishing(earlier, 1000)
    assert running.reserved_before(1) == 5000 + 1000
    running.publish(0, 3000, after_finishing=True)  # case 0's network ended; its finish waits for the running one
    assert running.reserved_before(1) == 3000  # not 4000
    running.finishing(earlier, 4000)
    assert running.reserved_before(1) == 4000
    earlier.set_result(None)
    assert running.reserved_before(1) == 3000
    later = concurrent.futures.Future()
    running.handed_to_finish(0, later, 3000)  # case 0's finish runs: its reservation drops to 0
    assert running.reserved_before(1) == 3000
    running.publish(1, 2500)  # case 1's network, beside case 0's finish: both again
    assert running.reserved_before(2) == 2500 + 3000


def test_a_batch_publishes_each_cases_finish_as_one_that_follows_the_running_finish(tmp_path, monkeypatch):
    from LiverTumorSegLib.inference import batch
    from LiverTumorSegLib.inference.engine import SliceInferenceEngine
    from LiverTumorSegLib.inference.segmenter import Segmenter

    from inference_helpers import oracle_package, oracle_predictor

    cts, voxels = _three_phantom_cts(tmp_path)
    sizes = [n * batch.FINISH_BYTES_PER_VOXEL + batch.FINISH_FIXED_BYTES for n in voxels]
    told = []
    real = batch.RunningNetworkMemory.publish

    def publish(self, index, reserved_bytes, after_finishing=False):
        if index < 1 << 62:
            told.append((index, reserved_bytes, after_finishing))
        return real(self, index, reserved_bytes, after_finishing=True) if after_finishing else \
            real(self, index, reserved_bytes)

    monkeypatch.setattr(batch.RunningNetworkMemory, "publish", publish)
    segmenter = Segmenter(engine=SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=4,
                                                      batch_predictor=oracle_predictor))
    statuses = batch.segment_batch(batch.find_cases(cts, tmp_path / "out"), segmenter)
    assert [s.status for s in statuses] == ["done"] * 3, [s.message for s in statuses]
    # per case: its network's estimate (beside the running finish), its finish once the network ended (after the
    # running finish), and 0 once that finish has started
    assert [(i, b, a) for i, b, a in told if a] == [(i, sizes[i], True) for i in range(3)]
    assert [(i, b) for i, b, a in told if not a and b == 0] == [(i, 0) for i in range(3)]


def test_a_seg_nrrd_read_is_checked_for_its_label_map_and_masks(tmp_path, monkeypatch):
    """The .seg.nrrd reader's check counted two copies of the stored voxels (2 bytes a voxel for one uint8 layer),
    where the read holds them, the uint8 label map, its two boolean masks and one layer's comparison: 5.0 allocated."""
    pytest.importorskip("slicer")  # writing the .seg.nrrd needs slicer-core (no wheel for Python 3.9)
    from LiverTumorSegLib.io import itk
    from LiverTumorSegLib.mrml import write_seg_nrrd
    from LiverTumorSegLib.segnrrd import read_seg_nrrd_labels
    from LiverTumorSegLib.volume import ImageGeometry

    labels = np.zeros((30, 96, 128), np.uint8)
    labels[4:26, 20:80, 20:110] = 1
    labels[10:16, 40:60, 40:60] = 2
    path = write_seg_nrrd(tmp_path / "ref.seg.nrrd", labels, ImageGeometry(spacing=(1.0, 1.0, 2.0)))
    asked = []
    real_check = itk.check_memory_for_read

    def check(shape_xyz, itemsize, source, copy_itemsize=None, **kwargs):
        asked.append(itemsize + (itemsize if copy_itemsize is None else copy_itemsize))
        return real_check(shape_xyz, itemsize, source, copy_itemsize=copy_itemsize, **kwargs)

    monkeypatch.setattr(itk, "check_memory_for_read", check)
    read_seg_nrrd_labels(path)  # imports and caches out of the way
    asked.clear()
    volume, peak = _numpy_peak(lambda: read_seg_nrrd_labels(path))
    assert np.array_equal(volume.array, labels)
    assert len(asked) == 1
    assert peak > 2 * labels.size  # what was counted before
    assert peak <= asked[0] * labels.size + (256 << 10), (peak / labels.size, asked)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_a_readers_own_check_counts_the_buffers_it_inflates_through_as_a_batch_does(tmp_path, monkeypatch, suffix):
    """The readers' own checks left out the inflating buffers a batch's count of the same read ahead includes
    (``read_peak_bytes``): a float64 gzip file one inflating step holds whole allocates 8 + 16 bytes a voxel and its
    compressed bytes (tracemalloc), where the check counted 16 (stored, HU copy and labels). One formula now."""
    import LiverTumorSegLib.validation as validation
    from LiverTumorSegLib.io import read_volume
    from LiverTumorSegLib.io.reading import read_peak_bytes

    values = np.random.default_rng(12).integers(-1000, 1500, size=(20, 96, 128)).astype(np.float64) + 0.25
    path = _write_compressed_ct(tmp_path / f"ct{suffix}", values)
    read_volume(path)  # imports and caches out of the way
    volume, peak = _numpy_peak(lambda: read_volume(path))
    np.testing.assert_allclose(volume.array, values, atol=1e-3)
    asked = []
    monkeypatch.setattr(validation, "check_memory", lambda required, *args, **kwargs: asked.append(int(required)))
    read_volume(path)
    assert len(asked) == 1
    own = asked[0] - validation.RUNTIME_OVERHEAD_BYTES  # the fixed overhead aside: what it counts for the voxels
    assert own >= read_peak_bytes(path), (own / values.size, read_peak_bytes(path) / values.size)
    assert peak <= own + (256 << 10), (peak / values.size, own / values.size)


@pytest.mark.parametrize("later_slope, later_intercept", [("1", "1"), ("0.5", "0")])
def test_a_dicom_series_read_twice_for_its_rescale_is_counted_so(tmp_path, monkeypatch, later_slope, later_intercept):
    """A series whose rescale differs between slices is read again as float32 while GDCM's first (int16) image is
    held, then the float32 image and its HU copy: a 512 x 512 x 40 series peaked at 6.0 bytes a voxel (RSS; 10.0
    with a fractional slope, some 2 of them the HU check's fixed-size temporaries), where the reader's check and a
    batch's count of the read ahead counted 4. Now 8; a series with one rescale stays at 4."""
    import pydicom

    from LiverTumorSegLib.io import read_volume
    from LiverTumorSegLib.io.dicom import dicom_folder_read_bytes
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    voxels = np.random.default_rng(8).integers(-1000, 1500, size=(5, 20, 24)).astype(np.int16)
    files = write_ct_series(tmp_path / "ct", CTVolume(voxels, ImageGeometry(spacing=(0.7, 0.8, 2.5))))
    asked, volume = _asked_per_voxel(monkeypatch, lambda: read_volume(tmp_path / "ct"))
    assert asked == 4 and dicom_folder_read_bytes(tmp_path / "ct") == 4 * voxels.size
    ds = pydicom.dcmread(str(files[3]))
    ds.RescaleSlope, ds.RescaleIntercept = later_slope, later_intercept
    ds.save_as(str(files[3]))
    asked, volume = _asked_per_voxel(monkeypatch, lambda: read_volume(tmp_path / "ct"))
    expected = voxels.astype(np.float64)
    expected[3] = expected[3] * float(later_slope) + float(later_intercept)
    np.testing.assert_allclose(volume.array, expected)  # read twice: the later slice's rescale kept
    assert asked == 8
    # the batch's count: 8 for each file read twice (the fractional slope's own file is counted as GDCM reads it)
    assert dicom_folder_read_bytes(tmp_path / "ct") >= 8 * voxels.size


@pytest.mark.parametrize("encoding", ["raw", "gzip"])
@pytest.mark.parametrize("layers", [1, 4])
def test_a_multi_layer_seg_nrrd_read_is_counted_by_its_layers(tmp_path, monkeypatch, layers, encoding):
    """A .seg.nrrd's read holds its stored voxels (every layer) and builds 4 bytes a voxel beside them whatever the
    layers (the label map, two masks, one layer's comparison); its check counted twice the stored bytes where more
    than 4: a 4-layer 60 x 256 x 256 raw file counted 4 + 8 (16 with the labels) and peaked at 8.0 (RSS). Now the
    stored layers and 4, and a gzip file's inflating buffers by the formula every reader shares."""
    import LiverTumorSegLib.validation as validation
    from LiverTumorSegLib.io.conversions import read_peak_voxel_bytes
    from LiverTumorSegLib.io.itk import _compressed_data_bytes
    from LiverTumorSegLib.segnrrd import read_seg_nrrd_labels
    from test_segnrrd import LIVER, TUMOR, write_seg_nrrd_by_hand

    rng = np.random.default_rng(21)
    stack = [(rng.random((20, 64, 80)) < 0.3).astype(np.uint8) for _ in range(layers)]
    segments = [LIVER] if layers == 1 else [dict(LIVER, Layer="0", LabelValue="1"), dict(TUMOR, Layer="1",
                                                                                         LabelValue="1")] + \
        [{"ID": f"s{i}", "Name": f"Liver {i}", "Layer": str(i), "LabelValue": "1"} for i in range(2, layers)]
    path = write_seg_nrrd_by_hand(tmp_path / "ref.seg.nrrd", stack, segments, encoding=encoding)
    read_seg_nrrd_labels(path)  # imports and caches out of the way
    volume, peak = _numpy_peak(lambda: read_seg_nrrd_labels(path))
    voxels = volume.array.size
    if encoding == "raw":  # ITK's image of the stored voxels, which tracemalloc does not see
        peak += layers * voxels
    expected_tumor = stack[1].astype(bool) if layers > 1 else np.zeros(stack[0].shape, bool)
    assert np.array_equal(volume.array == 2, expected_tumor)
    asked = []
    monkeypatch.setattr(validation, "check_memory", lambda required, *args, **kwargs: asked.append(int(required)))
    read_seg_nrrd_labels(path)
    own = asked[0] - validation.RUNTIME_OVERHEAD_BYTES
    compressed = _compressed_data_bytes(path) if encoding == "gzip" else None
    # the stored layers, the 4 bytes built beside them and the 4 the estimate keeps for labels made later, or the
    # inflating peak where more
    assert own == max((layers + 4 + 4) * voxels, read_peak_voxel_bytes(voxels, layers, 4, compressed))
    assert peak <= own + (256 << 10), (peak / voxels, own / voxels)


def _metaimage_with_a_fourth_axis(path, values):
    """A compressed MetaImage of ``values`` (z, y, x) written with a trailing 4th axis of 1 (NDims = 4): a header
    that sends the read to ITK, which inflates it itself."""
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(values), str(path), True)
    raw = path.read_bytes()
    end = raw.index(b"ElementDataFile = LOCAL\n") + len(b"ElementDataFile = LOCAL\n")
    head = raw[:end].decode()
    nz, ny, nx = values.shape
    for old, new in (("NDims = 3", "NDims = 4"), ("Offset = 0 0 0", "Offset = 0 0 0 0"),
                     ("TransformMatrix = 1 0 0 0 1 0 0 0 1", "TransformMatrix = 1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1"),
                     ("CenterOfRotation = 0 0 0", "CenterOfRotation = 0 0 0 0"),
                     ("ElementSpacing = 1 1 1", "ElementSpacing = 1 1 1 1"),
                     (f"DimSize = {nx} {ny} {nz}", f"DimSize = {nx} {ny} {nz} 1")):
        assert old in head
        head = head.replace(old, new)
    path.write_bytes(head.encode() + raw[end:])
    return path


def test_a_compressed_metaimage_itk_inflates_is_counted_with_its_compressed_bytes(tmp_path, monkeypatch):
    """MetaIO reads a compressed MetaImage's whole compressed block before inflating it: a 4D (trailing 1) float64
    MetaImage, which ITK reads itself, rose 15.6 bytes a voxel in ITK's read (8 stored, 7.65 compressed; RSS), where
    a 120 x 512 x 512 one was counted at 12.8 (the stored voxels and the inflating step, capped at 64 MiB). Counted
    with its compressed bytes now; a gzip NRRD ITK reads streams (not counted so), as the fast path does. And the
    4th axis is dropped from a view: sitk.Extract copied the whole image (22.0 bytes a voxel held, now 15.6)."""
    import SimpleITK as sitk

    import LiverTumorSegLib.io.gzip_inflate as gzip_inflate
    from LiverTumorSegLib.io import read_volume
    from LiverTumorSegLib.io.itk import _compressed_data_bytes
    from LiverTumorSegLib.io.reading import read_peak_bytes

    values = np.random.default_rng(31).integers(-1000, 1500, size=(6, 40, 48)) + \
        np.random.default_rng(32).random((6, 40, 48))
    four = _metaimage_with_a_fourth_axis(tmp_path / "ct4.mha", values)
    three = tmp_path / "ct3.mha"
    sitk.WriteImage(sitk.GetImageFromArray(values), str(three), True)

    def no_extract(*args, **kwargs):
        raise AssertionError("sitk.Extract copies the whole image")

    monkeypatch.setattr(sitk, "Extract", no_extract)
    volume = read_volume(four)
    np.testing.assert_allclose(volume.array, values, atol=1e-3)
    assert volume.geometry.spacing == read_volume(three).geometry.spacing
    # a large file's step: the inflating buffers are capped (64 MiB) far below a poorly compressible file's bytes
    real = gzip_inflate.inflate_peak_bytes
    monkeypatch.setattr(gzip_inflate, "inflate_peak_bytes", lambda nbytes, compressed: real(nbytes, compressed, 512, 512))
    stored, compressed = values.nbytes, _compressed_data_bytes(four)
    assert compressed > 0.5 * stored
    assert read_peak_bytes(four) == max(stored + values.size * 4, stored + compressed)
    assert read_peak_bytes(three) == stored + max(values.size * 4, 2 * 512 + 512)  # inflated here, step by step


def test_an_itk_read_checks_its_voxels_hu_type_once(tmp_path, monkeypatch):
    """ITK's image became the HU array (to_hu_dtype), then _volume_from_voxels checked the copy again, its
    fixed-size temporaries (16 slices' worth) beside the image and the copy: a 20 x 512 x 512 float32 NRRD of
    fractional values rose 12.0 bytes a voxel (RSS) where 8 were counted; 8.0 now."""
    import SimpleITK as sitk

    import LiverTumorSegLib.io.itk as itk
    from LiverTumorSegLib.io import read_volume

    values = (np.random.default_rng(33).integers(-1000, 1500, size=(6, 20, 24)) + 0.25).astype(np.float32)
    path = tmp_path / "ct.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(values), str(path), False)
    calls = []
    real = itk.to_hu_dtype
    monkeypatch.setattr(itk, "to_hu_dtype", lambda array, *args: calls.append(array.shape) or real(array, *args))
    volume = read_volume(path)
    assert np.array_equal(volume.array, values) and volume.array.dtype == np.float32
    assert calls == [values.shape]


@pytest.mark.parametrize("dtype, transposed", [(np.float32, False), (np.float64, False), (np.float64, True)])
def test_the_hu_check_holds_small_bounded_temporaries(dtype, transposed):
    """to_hu_dtype checked 16 slices at a time: their rounded values and two masks held 20 MiB beside a 512 x 512
    float32 CT (36 float64), in no memory count (a batch's read-ahead count has no fixed overhead), and a transposed
    (non-contiguous) array was copied whole first. Now two buffers of HU_CHECK_CHUNK_VOXELS voxels (2.25 MiB
    float64), let go before the HU copy is made: the peak is the copy's, or the buffers' where there is none."""
    from LiverTumorSegLib.io.conversions import HU_CHECK_CHUNK_VOXELS, to_hu_dtype

    values = np.random.default_rng(9).integers(-1024, 2000, size=(8, 512, 512)).astype(dtype)
    values = values.T if transposed else values
    buffers = HU_CHECK_CHUNK_VOXELS * (np.dtype(dtype).itemsize + 1)
    result, peak = _numpy_peak(lambda: to_hu_dtype(values))
    assert result.dtype == np.int16 and np.array_equal(result, values)
    assert peak <= result.nbytes + (64 << 10), (peak - result.nbytes) / 2 ** 20
    fractional = values.copy()
    fractional[-1, -1, -1] += 0.5  # in the last view checked
    result, peak = _numpy_peak(lambda: to_hu_dtype(fractional))
    assert result.dtype == np.float32 and np.array_equal(result, fractional.astype(np.float32))
    copy = 0 if result is fractional else result.nbytes
    assert peak <= max(copy, buffers) + (64 << 10), (peak - copy) / 2 ** 20


@pytest.mark.parametrize("shape", [(3, 100, 100), (1, 40, 40), (2, 3, 5), (600, 1000)])
def test_the_hu_checks_buffers_stay_under_the_hu_copy_of_a_small_array(shape):
    """A quarter of the array at most: 2.25 bytes a voxel of float64, under the 4 the counts hold for its copy."""
    from LiverTumorSegLib.io.conversions import _floats_fit_int16

    values = np.random.default_rng(11).integers(-1024, 2000, size=shape).astype(np.float64)
    fits, peak = _numpy_peak(lambda: _floats_fit_int16(values))  # integral: checked to the end
    assert fits
    assert peak <= 2.25 * values.size + 2048, peak / values.size


@pytest.mark.parametrize("shape, index", [((7, 9, 11), (slice(None),) * 3), ((7, 9, 11), (slice(None, None, 2),)),
                                          ((7, 9, 11), (slice(None), slice(1, None, 3), slice(None, None, -2))),
                                          ((40, 30), (slice(None, None, 3),)), ((500,), (slice(None, None, 7),)),
                                          ((3, 4, 5, 6), (Ellipsis, slice(None, None, 2)))])
@pytest.mark.parametrize("voxels", [1, 5, 64, 10 ** 6])
@pytest.mark.parametrize("transposed", [False, True])
def test_the_hu_checks_views_hold_each_voxel_once(shape, index, voxels, transposed):
    """Every voxel in exactly one view, each a view (no copy) of at most the voxels asked, contiguous or not."""
    from LiverTumorSegLib.io.conversions import _hu_check_chunks

    base = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    array = base[index]
    array = array.T if transposed else array
    parts = list(_hu_check_chunks(array, voxels))
    assert all(np.shares_memory(part, base) for part in parts)
    assert all(part.size <= voxels for part in parts)
    seen = np.sort(np.concatenate([part.ravel() for part in parts]))
    assert np.array_equal(seen, np.sort(array.ravel()))


def test_the_hu_check_gives_the_type_it_gave_for_any_values(monkeypatch):
    """NaN, infinities, values beyond int16, -0.0 and a fraction in any view: the type is what checking the whole
    array at once gives."""
    from LiverTumorSegLib.io import conversions

    def whole(array):
        ok = bool(np.all(np.isfinite(array)) and np.array_equal(array, np.rint(array))
                  and conversions._fits_int16(float(array.min()), float(array.max())))
        return np.int16 if ok else np.float32

    monkeypatch.setattr(conversions, "HU_CHECK_CHUNK_VOXELS", 4)  # many views on a small array
    rng = np.random.default_rng(10)
    base = rng.integers(-1024, 2000, size=(5, 6, 7)).astype(np.float64)
    for odd in (np.nan, np.inf, -np.inf, 40000.0, -32769.0, 32767.0, -32768.0, 0.25, -0.0, 1e-9):
        for position in ((0, 0, 0), (2, 3, 4), (4, 5, 6)):
            for dtype in (np.float16, np.float32, np.float64):
                array = base.copy()
                array[position] = odd
                array = array.astype(dtype)
                for view in (array, array.T, array[:, ::2]):
                    result = conversions.to_hu_dtype(view)
                    assert result.dtype == whole(view), (odd, position, dtype)
                    assert np.array_equal(result, view.astype(result.dtype), equal_nan=True)


def test_a_dicom_series_read_twice_holds_no_more_than_its_counts(tmp_path, monkeypatch):
    """Read twice (one slice's slope 0.5), the series' float32 image (4 bytes a voxel, ITK's: the first, int16
    image let go by then) is held beside what numpy allocates: the float32 HU copy and the HU check's temporaries,
    which were the whole array's rounded values and masks on a short CT (5.05 bytes a voxel allocated here, 9.0 RSS
    at 512 x 512 x 16 and 10.0 at 40 slices before the check ran once, where the counts say 8). Now the copy and
    buffers let go before it: 4.05 allocated, 8.0 RSS."""
    import pydicom

    from LiverTumorSegLib.io import read_volume
    from LiverTumorSegLib.io.dicom import dicom_folder_read_bytes
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    voxels = np.random.default_rng(12).integers(-1000, 1500, size=(8, 256, 256)).astype(np.int16)
    files = write_ct_series(tmp_path / "ct", CTVolume(voxels, ImageGeometry(spacing=(0.7, 0.8, 2.5))))
    ds = pydicom.dcmread(str(files[3]))
    ds.RescaleSlope = "0.5"
    ds.save_as(str(files[3]))
    asked, _ = _asked_per_voxel(monkeypatch, lambda: read_volume(tmp_path / "ct"))
    volume, peak = _numpy_peak(lambda: read_volume(tmp_path / "ct"))
    assert volume.array.dtype == np.float32
    held = 4 * voxels.size + peak  # ITK's float32 image and numpy's allocations beside it
    assert held <= asked * voxels.size + (64 << 10), held / voxels.size
    assert held <= dicom_folder_read_bytes(tmp_path / "ct") + (64 << 10), held / voxels.size


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
                                   np.uint64, np.float16, np.float32, np.float64])
def test_the_hu_copy_is_counted_at_no_less_than_to_hu_dtype_makes(dtype):
    """The readers' counts of the HU copy (hu_copy_itemsize) against what to_hu_dtype makes of the stored type's
    values that need the widest copy (a fraction, a value beyond int16): float16 was counted at 2 bytes a voxel, where
    a fraction makes the copy float32 (4)."""
    from LiverTumorSegLib.io.conversions import hu_copy_itemsize, to_hu_dtype

    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        values = np.array([[[-1000.5, 0.25, 1000.0]]], dtype)
    elif dtype.kind == "b":
        values = np.array([[[True, False]]])
    else:
        info = np.iinfo(dtype)
        values = np.array([[[info.min, info.max]]], dtype)
    copy = to_hu_dtype(values)
    made = 0 if copy is values else copy.itemsize
    assert made <= hu_copy_itemsize(dtype.itemsize, False, unsigned=dtype.kind == "u", floating=dtype.kind == "f")


@pytest.mark.parametrize("bits_stored, signed, slope, intercept, itemsize", [
    (16, 1, "1", "0", 2), (12, 0, "1", "-1024", 2), (16, 1, "2", "-1024", 4), (16, 0, "2", "-1024", 4),
    (16, 1, "0.5", "0", 8)])
def test_a_dicom_files_count_takes_the_pixel_type_gdcm_reads_it_as(tmp_path, bits_stored, signed, slope, intercept,
                                                                 itemsize):
    """The bytes a voxel that a DICOM file's count (``_gdcm_output_itemsize``, from its header alone) takes are
    those of the type GDCM reads it as: int16 where the rescaled range fits 16 bits, int32 where a whole slope
    takes it beyond (signed 16 bits times 2: -66560..64510), float64 for a fractional rescale. The batch's count
    of the read ahead is then that type and the HU copy (4 bytes a voxel where GDCM's type is not int16)."""
    import pydicom
    import SimpleITK as sitk

    from LiverTumorSegLib.io.dicom import _gdcm_output_itemsize, dicom_folder_read_bytes
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    files = write_ct_series(tmp_path / "ct", CTVolume(np.zeros((2, 6, 8), np.int16), ImageGeometry(spacing=(1, 1, 2))))
    for name in files:
        ds = pydicom.dcmread(str(name))
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits_stored, bits_stored - 1, signed
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.save_as(str(name))
    header = pydicom.dcmread(str(files[0]), stop_before_pixels=True)
    read = sitk.ReadImage(str(files[0]))
    assert _gdcm_output_itemsize(header) == (itemsize, itemsize == 2)
    assert read.GetSizeOfPixelComponent() == itemsize, read.GetPixelIDTypeAsString()
    assert dicom_folder_read_bytes(tmp_path / "ct") == 2 * 6 * 8 * (itemsize + (2 if itemsize == 2 else 4))
