"""Write a CT volume as a real DICOM CT series (one file per slice, pydicom) for the DICOM SEG tests.

The series has everything a DICOM Segmentation must reference: patient/study/series/frame-of-reference UIDs,
CT Image Storage SOP class, ImagePositionPatient / ImageOrientationPatient / PixelSpacing / SliceThickness,
RescaleSlope 1 / RescaleIntercept 0 (signed 16-bit stored values = HU).
"""
from pathlib import Path
from typing import List

import numpy as np

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def write_ct_series(folder: Path, volume, uid_seed: int = 1, shuffle_names: bool = True) -> List[Path]:
    """Write ``volume`` (a CTVolume in HU) as a DICOM series in ``folder``; returns the files in slice order.

    File names are in reverse slice order when ``shuffle_names`` (readers must sort by position, not name).
    """
    import pydicom
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
        ds.Modality = "CT"
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Phantom", "LTS-TEST", "19700101", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame_of_reference
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "A1", ""
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20260101"
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
        ds.SeriesNumber, ds.InstanceNumber = 3, k + 1
        ds.SeriesDescription = "synthetic test CT"
        ds.Manufacturer = "LiverTumorSeg tests"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [f"{g.spacing[1]:.8f}", f"{g.spacing[0]:.8f}"]  # row spacing (y), column spacing (x)
        ds.SliceThickness = f"{g.spacing[2]:.6f}"
        ds.SpacingBetweenSlices = f"{g.spacing[2]:.6f}"
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "HU"
        ds.PixelData = stored[k].tobytes()
        name = folder / f"ct{(nz - 1 - k) if shuffle_names else k:04d}.dcm"
        ds.save_as(str(name), enforce_file_format=True)
        files.append(name)
    return files
