"""Write a CT volume as a real DICOM CT series (one file per slice, pydicom) for the DICOM SEG tests.

The series has everything a DICOM Segmentation must reference: patient/study/series/frame-of-reference UIDs,
CT Image Storage SOP class, ImagePositionPatient / ImageOrientationPatient / PixelSpacing / SliceThickness,
RescaleSlope 1 / RescaleIntercept 0 (signed 16-bit stored values = HU).
"""
from pathlib import Path
from typing import List, Optional

import numpy as np

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def save_dicom(ds, path, implicit_vr=None) -> None:
    """Write the pydicom dataset ``ds`` to ``path`` as a Part 10 file (preamble, 'DICM', file meta header) with
    pydicom 3 and with pydicom 2 alike: pydicom 2 is the newest for Python 3.9 (Slicer 5.6 and 5.8's Python), and
    its ``save_as`` has no ``enforce_file_format``. ``implicit_vr``: True or False chooses the little-endian
    encoding (the file meta's TransferSyntaxUID must agree); None keeps what ``ds`` says."""
    import pydicom

    if int(pydicom.__version__.split(".")[0]) >= 3:
        options = {} if implicit_vr is None else {"implicit_vr": implicit_vr, "little_endian": True}
        ds.save_as(str(path), enforce_file_format=True, **options)
        return
    if implicit_vr is not None:
        ds.is_implicit_VR, ds.is_little_endian = implicit_vr, True
    elif getattr(ds, "is_little_endian", None) is None:  # pydicom 2 takes the encoding from the dataset only
        syntax = ds.file_meta.TransferSyntaxUID
        ds.is_implicit_VR, ds.is_little_endian = syntax.is_implicit_VR, syntax.is_little_endian
    ds.save_as(str(path), write_like_original=False)


def write_ct_series(folder: Path, volume, uid_seed: int = 1, shuffle_names: bool = True,
                    description: str = "synthetic test CT", charset: str = "", modality: str = "CT",
                    photometric: str = "MONOCHROME2", series_number: int = 3, name_prefix: str = "ct",
                    slice_thickness_mm: Optional[float] = None) -> List[Path]:
    """Write ``volume`` (a CTVolume in HU) as a DICOM series in ``folder``; returns the files in slice order.

    File names are in reverse slice order when ``shuffle_names`` (readers must sort by position, not name).
    ``charset``: SpecificCharacterSet (e.g. "ISO_IR 100": the description is stored in Latin-1). ``name_prefix``: of
    the file names (give each series its own to put several in one folder). ``slice_thickness_mm``: SliceThickness
    (default: the slice spacing; above it: overlapping slices, e.g. 7 mm slices every 5 mm). Skips the calling test where pydicom is
    not installed.
    """
    import pytest

    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    prefix = "1.2.826.0.1.3680043.8.498."
    study = generate_uid(prefix, entropy_srcs=[f"study{uid_seed}"])
    series = generate_uid(prefix, entropy_srcs=[f"series{uid_seed}"])
    frame_of_reference = generate_uid(prefix, entropy_srcs=[f"for{uid_seed}"])
    g = volume.geometry
    direction = g.direction_matrix
    row_dir, col_dir = direction[:, 0], direction[:, 1]  # i (columns) runs along the row direction
    nz, ny, nx = volume.shape_zyx
    stored = np.asarray(volume.array).astype(np.int16)
    files = []
    for k in range(nz):
        position = g.index_to_lps((0.0, 0.0, float(k)))
        sop = generate_uid(prefix, entropy_srcs=[f"sop{uid_seed}.{k}"])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE_STORAGE, sop
        ds.Modality = modality
        if charset:
            ds.SpecificCharacterSet = charset
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Phantom", "LTS-TEST", "19700101", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame_of_reference
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "A1", ""
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20260101"
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
        ds.SeriesNumber, ds.InstanceNumber = series_number, k + 1
        ds.SeriesDescription = description
        ds.Manufacturer = "LiverTumorSeg tests"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [f"{g.spacing[1]:.8f}", f"{g.spacing[0]:.8f}"]  # row spacing (y), column spacing (x)
        ds.SliceThickness = f"{g.spacing[2] if slice_thickness_mm is None else slice_thickness_mm:.6f}"
        ds.SpacingBetweenSlices = f"{g.spacing[2]:.6f}"
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "HU"
        ds.PixelData = stored[k].tobytes()
        name = folder / f"{name_prefix}{(nz - 1 - k) if shuffle_names else k:04d}.dcm"
        save_dicom(ds, name)
        files.append(name)
    return files


ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"


def write_enhanced_ct(path: Path, volume, order=None, intercepts=None, uid_seed: int = 1,
                      slice_thickness_mm: Optional[float] = None) -> Path:
    """Write ``volume`` (a CTVolume in HU, axial, identity direction) as one multi-frame Enhanced CT file.

    ``order``: the slice index of each stored frame (default ascending); ``intercepts``: a rescale intercept per
    slice, stored per frame (default one shared intercept 0); ``slice_thickness_mm``: the shared Pixel Measures'
    SliceThickness (default: the slice spacing)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    prefix = "1.2.826.0.1.3680043.8.498."
    g = volume.geometry
    nz, ny, nx = volume.shape_zyx
    order = list(range(nz)) if order is None else list(order)
    sop = generate_uid(prefix, entropy_srcs=[f"enh-sop{uid_seed}"])
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ENHANCED_CT_IMAGE_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = ENHANCED_CT_IMAGE_STORAGE, sop, "CT"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Enhanced", "LTS-TEST", "19700101", "O"
    ds.StudyInstanceUID = generate_uid(prefix, entropy_srcs=[f"enh-study{uid_seed}"])
    ds.SeriesInstanceUID = generate_uid(prefix, entropy_srcs=[f"enh-series{uid_seed}"])
    ds.FrameOfReferenceUID = generate_uid(prefix, entropy_srcs=[f"enh-for{uid_seed}"])
    ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "A1", ""
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20260101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AcquisitionDateTime = "20260101120000"
    ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = 7, 1, "enhanced CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.Rows, ds.Columns, ds.NumberOfFrames = ny, nx, nz
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [f"{g.spacing[1]:.6f}", f"{g.spacing[0]:.6f}"]
    measures.SpacingBetweenSlices = f"{g.spacing[2]:.6f}"
    measures.SliceThickness = f"{g.spacing[2] if slice_thickness_mm is None else slice_thickness_mm:.6f}"
    shared.PixelMeasuresSequence = Sequence([measures])
    orientation = Dataset()
    orientation.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    shared.PlaneOrientationSequence = Sequence([orientation])
    if intercepts is None:
        transform = Dataset()
        transform.RescaleIntercept, transform.RescaleSlope, transform.RescaleType = "0", "1", "HU"
        shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame, frames = [], []
    for k in order:
        group = Dataset()
        plane = Dataset()
        plane.ImagePositionPatient = [f"{v:.6f}" for v in g.index_to_lps((0.0, 0.0, float(k)))]
        group.PlanePositionSequence = Sequence([plane])
        content = Dataset()
        content.InStackPositionNumber, content.StackID, content.DimensionIndexValues = k + 1, "1", [1, k + 1]
        group.FrameContentSequence = Sequence([content])
        intercept = 0.0 if intercepts is None else float(intercepts[k])
        if intercepts is not None:
            transform = Dataset()
            transform.RescaleIntercept, transform.RescaleSlope, transform.RescaleType = f"{intercept:g}", "1", "HU"
            group.PixelValueTransformationSequence = Sequence([transform])
        per_frame.append(group)
        frames.append(np.rint(np.asarray(volume.array[k], dtype=float) - intercept).astype(np.int16))
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = np.stack(frames).tobytes()
    save_dicom(ds, path)
    return path
