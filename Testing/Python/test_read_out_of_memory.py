"""Running out of memory while a reader decodes an image (a 900-slice CT) is an out-of-memory error naming the
file, not "the file is truncated or corrupt": the readers' broad excepts let allocation failures through
(errors.raise_if_out_of_memory) before they word anything else as a bad file."""
import json

import numpy as np
import pytest
from evaluate_helpers import write_evaluate_folders

from LiverTumorSegLib.errors import ResourceError
from LiverTumorSegLib.io import read_volume, write_volume
from LiverTumorSegLib.volume import CTVolume, ImageGeometry

NUMPY_MEMORY_ERROR = "Unable to allocate 1.17 GiB for an array with shape (1258291200,) and data type uint8"
ITK_ALLOCATION_ERROR = ("Exception thrown in SimpleITK ImageFileReader_Execute: /tmp/SimpleITK-build/ITK-prefix/"
                        "include/ITK-5.4/itkImportImageContainer.hxx:179:\nFailed to allocate memory for image.")
GEOMETRY = ImageGeometry(spacing=(0.8, 0.8, 2.5), origin=(4.0, -3.0, 20.0))


def _ct(tmp_path, name):
    array = np.full((4, 6, 5), -100, np.int16)
    array[1:3, 2:4, 1:4] = 60
    return write_volume(tmp_path / name, CTVolume(array, GEOMETRY))


def _fail_with(exception):
    def fail(*args, **kwargs):
        raise exception

    return fail


def _assert_out_of_memory(excinfo, path, detail):
    text = str(excinfo.value)
    assert text.startswith(f"Ran out of memory reading '{path}' ({detail}"), text
    assert "corrupt" not in text and "truncated" not in text and "batch" not in text, text
    assert text.endswith("Close other programs to free memory, or use a machine with more memory."), text


def test_a_memory_error_decoding_a_nifti_is_out_of_memory_not_a_corrupt_file(tmp_path, monkeypatch):
    from nibabel.arrayproxy import ArrayProxy

    from LiverTumorSegLib.io import gzip_inflate

    compressed, plain = _ct(tmp_path, "ct.nii.gz"), _ct(tmp_path, "ct.nii")
    with monkeypatch.context() as patch:  # .nii.gz: the voxels are inflated here (io.gzip_inflate)
        patch.setattr(gzip_inflate, "inflate_to_end", _fail_with(MemoryError(NUMPY_MEMORY_ERROR)))
        with pytest.raises(ResourceError) as excinfo:
            read_volume(compressed)
        _assert_out_of_memory(excinfo, compressed, NUMPY_MEMORY_ERROR)
    with monkeypatch.context() as patch:  # .nii: read in steps (io.gzip_inflate.read_range), no longer by nibabel
        patch.setattr(gzip_inflate, "read_range", _fail_with(MemoryError(NUMPY_MEMORY_ERROR)))
        with pytest.raises(ResourceError) as excinfo:
            read_volume(plain)
        _assert_out_of_memory(excinfo, plain, NUMPY_MEMORY_ERROR)
    with monkeypatch.context() as patch:  # a .nii nibabel reads (a memory-mapped proxy, say)
        from LiverTumorSegLib.io import nifti

        patch.setattr(nifti, "_plain_proxy", lambda image: False)
        patch.setattr(ArrayProxy, "get_unscaled", _fail_with(MemoryError(NUMPY_MEMORY_ERROR)))
        with pytest.raises(ResourceError) as excinfo:
            read_volume(plain)
        _assert_out_of_memory(excinfo, plain, NUMPY_MEMORY_ERROR)
    with monkeypatch.context() as patch:  # the header load (nibabel)
        import nibabel

        patch.setattr(nibabel, "load", _fail_with(MemoryError()))
        with pytest.raises(ResourceError) as excinfo:
            read_volume(plain)
        _assert_out_of_memory(excinfo, plain, "MemoryError")
    with monkeypatch.context() as patch:  # a damaged file still reads as one
        patch.setattr(gzip_inflate, "inflate_to_end", _fail_with(EOFError("Compressed file ended early")))
        with pytest.raises(Exception, match="truncated or corrupt"):
            read_volume(compressed)


def test_itks_allocation_failure_is_out_of_memory_for_images_and_series(tmp_path, monkeypatch):
    """SimpleITK raises RuntimeError "...Failed to allocate memory for image." (measured under ulimit -v)."""
    import SimpleITK as sitk

    nrrd = _ct(tmp_path, "ct.nrrd")
    folder = tmp_path / "dicom"
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(3):  # a 3-slice CT series
        image = sitk.GetImageFromArray(np.full((6, 5), 40, np.int16))
        image.SetSpacing((0.8, 0.8))
        for tag, value in (("0008|0060", "CT"), ("0020|000d", "1.2.826.0.1.3680043.2.1125.7"),
                           ("0020|000e", "1.2.826.0.1.3680043.2.1125.7.1"), ("0020|0013", str(k + 1)),
                           ("0020|0032", f"0\\0\\{2.5 * k}"), ("0020|0037", "1\\0\\0\\0\\1\\0"),
                           ("0018|0050", "2.5"), ("0008|0018", f"1.2.826.0.1.3680043.2.1125.7.1.{k + 1}")):
            image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"s{k}.dcm"))
        writer.Execute(image)
    read_volume(folder)  # readable as it is
    raw_nrrd = tmp_path / "raw.nrrd"  # uncompressed, with a field the voxels are not read here for: ITK reads them
    sitk.WriteImage(sitk.ReadImage(str(nrrd)), str(raw_nrrd), False)  # (a plain one is read in steps, and a
    raw = raw_nrrd.read_bytes()  # compressed one built from the integrity check's inflated bytes)
    raw_nrrd.write_bytes(raw.replace(b"encoding: raw\n", b"encoding: raw\nbyte skip: 0\n", 1))
    from LiverTumorSegLib.io import gzip_inflate

    plain_nrrd = tmp_path / "plain.nrrd"
    sitk.WriteImage(sitk.ReadImage(str(nrrd)), str(plain_nrrd), False)
    with monkeypatch.context() as patch:  # the plain one: the buffer its steps are read into
        patch.setattr(gzip_inflate, "read_range", _fail_with(MemoryError(NUMPY_MEMORY_ERROR)))
        with pytest.raises(ResourceError) as excinfo:
            read_volume(plain_nrrd)
        _assert_out_of_memory(excinfo, plain_nrrd, NUMPY_MEMORY_ERROR)
    monkeypatch.setattr(sitk.ImageFileReader, "Execute", _fail_with(RuntimeError(ITK_ALLOCATION_ERROR)))
    with pytest.raises(ResourceError) as excinfo:
        read_volume(raw_nrrd)
    _assert_out_of_memory(excinfo, raw_nrrd, "Failed to allocate memory for image)")

    with monkeypatch.context() as patch:  # the compressed one: the buffer of its inflated voxels
        patch.setattr(gzip_inflate, "inflate_to_end", _fail_with(MemoryError(NUMPY_MEMORY_ERROR)))
        with pytest.raises(ResourceError) as excinfo:
            read_volume(nrrd)
        _assert_out_of_memory(excinfo, nrrd, NUMPY_MEMORY_ERROR)
    monkeypatch.setattr(sitk.ImageSeriesReader, "Execute", _fail_with(RuntimeError(ITK_ALLOCATION_ERROR)))
    with pytest.raises(ResourceError, match=r"^Ran out of memory reading series [0-9.]+ of '[^']*dicom' \(Failed to "
                                            r"allocate memory for image\)\. Close other programs"):
        read_volume(folder)


def test_evaluate_and_measure_say_out_of_memory_for_label_and_probability_maps(tmp_path, monkeypatch, capsys):
    """The label-map and probability-map readers (read_label_map, read_probability_levels/_map) read through
    read_volume: the command says out of memory (exit 2, no --batch-size advice: they run no network)."""
    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.io import gzip_inflate

    labels = np.zeros((4, 6, 5), np.uint8)
    labels[1:3, 1:5, 1:4] = 1
    labels[1:2, 2:4, 2:3] = 2
    write_evaluate_folders(tmp_path, {"c": labels}, GEOMETRY, {"c": (labels == 2).astype(np.uint8) * 200})
    prob = tmp_path / "prob" / "c.nii.gz"
    real_inflate = gzip_inflate.inflate_to_end

    def inflate(path, *args, **kwargs):  # only the probability map's voxels do not fit
        if str(path) == str(prob):
            raise MemoryError(NUMPY_MEMORY_ERROR)
        return real_inflate(path, *args, **kwargs)

    monkeypatch.setattr(gzip_inflate, "inflate_to_end", inflate)
    for argv in (["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "--prob",
                  str(tmp_path / "prob"), "-o", str(tmp_path / "out"), "--no-plots"],
                 ["measure", str(tmp_path / "ref" / "c.nii.gz"), "--probabilities", str(prob), "-o",
                  str(tmp_path / "m.json")],
                 ["measure", str(prob), "-o", str(tmp_path / "n.json")]):  # as a label map
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"error: Ran out of memory reading '{prob}' (Unable to allocate 1.17 GiB" in err, err
        assert "corrupt" not in err and "batch" not in err, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.json").exists()
    monkeypatch.setattr(gzip_inflate, "inflate_to_end", real_inflate)
    assert main(["measure", str(tmp_path / "ref" / "c.nii.gz"), "--probabilities", str(prob), "-o",
                 str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["lesions"][0]["mean_tumor_probability"] == \
        pytest.approx(200 / 255, abs=1e-6)


def test_a_checkpoint_that_does_not_fit_in_memory_is_not_called_corrupt(tmp_path, monkeypatch):
    """load_checkpoint's advice for an unreadable checkpoint is to delete it: an allocation failure while
    loading it must not get that advice."""
    import torch

    from LiverTumorSegLib.training.checkpoint import load_checkpoint

    path = tmp_path / "last.pt"
    torch.save({"model": {}}, str(path))
    monkeypatch.setattr(torch, "load", _fail_with(RuntimeError(
        "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to allocate "
        "8589934592 bytes. Error code 12 (Cannot allocate memory)")))
    with pytest.raises(ResourceError) as excinfo:
        load_checkpoint(path)
    assert str(excinfo.value).startswith(f"Ran out of memory reading '{path}' ([enforce fail at alloc_cpu.cpp:117] "
                                         f"DefaultCPUAllocator: can't allocate memory"), excinfo.value
    assert "delete" not in str(excinfo.value)


def test_a_memory_error_in_a_data_loader_worker_is_out_of_memory_not_an_internal_error():
    """PyTorch's DataLoader re-raises a worker's MemoryError as a RuntimeError ('Caught MemoryError in DataLoader
    worker process 0' and the worker's traceback); `train --patch-size 100000` printed it as an internal error."""
    from LiverTumorSegLib.errors import out_of_memory_error

    worker = RuntimeError("Caught MemoryError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                          "last):\n  ...\nnumpy._core._exceptions._ArrayMemoryError: Unable to allocate 342. GiB")
    error = out_of_memory_error(worker, batch_size_option=True)
    assert isinstance(error, ResourceError)
    assert str(error).startswith("Ran out of memory (Caught MemoryError in DataLoader worker process 0)")
    assert out_of_memory_error(RuntimeError("Caught ValueError in DataLoader worker process 0.")) is None


def test_a_training_patch_larger_than_any_slice_is_refused_before_training():
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.training.config import MAX_PATCH_SIZE, TrainConfig

    with pytest.raises(InputError, match=r"patch_size=100000 is larger than any slice: at most 2048 pixels"):
        TrainConfig(patch_size=100000).validate()
    TrainConfig(patch_size=MAX_PATCH_SIZE).validate()
