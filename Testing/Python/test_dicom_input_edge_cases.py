"""DICOM CT input the reader must not get silently wrong (an audit's reproductions, made small): an inverted grey
scale, multi-frame files whose frames the reader would misplace or mis-scale, series choice, a DICOM SEG beside
the study, a scout of another size, Latin-1 descriptions."""
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pydicom")

from dicom_helpers import save_dicom, write_ct_series, write_enhanced_ct  # noqa: E402

from LiverTumorSegLib.errors import InputError  # noqa: E402
from LiverTumorSegLib.io import read_volume  # noqa: E402
from LiverTumorSegLib.io.dicom import find_dicom_series  # noqa: E402
from LiverTumorSegLib.phantom import make_phantom  # noqa: E402
from LiverTumorSegLib.volume import CTVolume, ImageGeometry  # noqa: E402


@pytest.fixture(scope="module")
def ct():
    """A small phantom CT in HU, axial, 2 mm slices."""
    phantom = make_phantom(shape_zyx=(8, 32, 32), seed=3)
    geometry = ImageGeometry(spacing=(3.0, 3.0, 2.0), origin=(-48.0, -60.0, -100.0))
    return CTVolume(np.asarray(phantom.ct.array, dtype=np.int16), geometry)


def test_a_monochrome1_series_is_refused_not_read_mirrored(tmp_path, ct):
    """GDCM inverts MONOCHROME1 values before the rescale: 103 HU read as -2152, and the run went on with a
    'no soft tissue' warning and a Dice-0 liver."""
    write_ct_series(tmp_path / "mono1", ct, photometric="MONOCHROME1")
    with pytest.raises(InputError, match="MONOCHROME1.*mirrored"):
        read_volume(tmp_path / "mono1")
    # signed, 12 bits stored: GDCM failed first, with 'An invalid logic behavior occurredPF.GetBitsStored() != 12.
    # Check that all its files are complete.'
    files = write_ct_series(tmp_path / "mono1_12bit", ct, photometric="MONOCHROME1")
    _retag(files, BitsStored=12, HighBit=11)
    with pytest.raises(InputError, match="is stored as MONOCHROME1 .*mirrored"):
        read_volume(tmp_path / "mono1_12bit")


def test_an_enhanced_ct_in_order_is_read_and_one_the_reader_would_misplace_is_refused(tmp_path, ct):
    """One multi-frame file: frames in order read right; shuffled frames gave 1 mm slices (a 0 mL liver),
    a rescale intercept set per frame put every other slice 1024 HU off, both without a word."""
    good = read_volume(write_enhanced_ct(tmp_path / "in_order.dcm", ct))
    np.testing.assert_allclose(good.geometry.spacing, (3.0, 3.0, 2.0), atol=1e-4)
    np.testing.assert_allclose(good.geometry.origin, ct.geometry.origin, atol=1e-3)
    np.testing.assert_array_equal(good.array, ct.array)
    shuffled = [3, 0, 7, 1, 6, 2, 5, 4]
    with pytest.raises(InputError, match="not on the grid the DICOM reader builds"):
        read_volume(write_enhanced_ct(tmp_path / "shuffled.dcm", ct, order=shuffled, uid_seed=2))
    intercepts = [-1024.0 if k % 2 else 0.0 for k in range(ct.shape_zyx[0])]
    with pytest.raises(InputError, match="rescale per frame"):
        read_volume(write_enhanced_ct(tmp_path / "per_frame.dcm", ct, intercepts=intercepts, uid_seed=3))


def test_a_gantry_tilted_enhanced_ct_is_refused_as_tilted_not_as_frames_out_of_order(tmp_path, ct):
    """Frames whose origins drift along the columns in step with their height (a 15 degree tilt) were refused as
    'frames out of order, a missing frame or uneven spacing'; a single-frame series with the same drift is named
    gantry-tilted, and so is the enhanced file now. Frames misplaced one by one are still 'out of order'."""
    import pydicom

    path = write_enhanced_ct(tmp_path / "tilted.dcm", ct)
    ds = pydicom.dcmread(str(path))
    step = float(np.tan(np.radians(15.0)) * ct.geometry.spacing[2])  # mm per frame along the columns (y)
    for k, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
        position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        position[1] += k * step
        frame.PlanePositionSequence[0].ImagePositionPatient = [f"{v:.6f}" for v in position]
    save_dicom(ds, path)
    with pytest.raises(InputError, match=r"is gantry-tilted: its frames shift by up to 3.75 mm .* about 15 degrees"):
        read_volume(path)
    shuffled = write_enhanced_ct(tmp_path / "shuffled.dcm", ct, order=[3, 0, 7, 1, 6, 2, 5, 4], uid_seed=2)
    with pytest.raises(InputError, match="not on the grid the DICOM reader builds"):
        read_volume(shuffled)


def _pixel_measures_per_frame(path: Path, spacing_of_frame) -> Path:
    """Rewrite the enhanced CT ``path`` with its PixelMeasuresSequence moved from the shared functional groups to
    each frame's, that frame's PixelSpacing being ``spacing_of_frame(index)`` (a ``[row, column]`` text pair; None:
    the frame has no pixel measures)."""
    import copy

    import pydicom
    from pydicom.sequence import Sequence as DicomSequence

    ds = pydicom.dcmread(str(path))
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    del ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence
    for index, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
        if spacing_of_frame(index) is not None:
            own = copy.deepcopy(measures)
            own.PixelSpacing = spacing_of_frame(index)
            frame.PixelMeasuresSequence = DicomSequence([own])
    save_dicom(ds, path)
    return path


def test_an_enhanced_ct_takes_its_pixel_spacing_from_the_frames_or_says_which_frames_lack_it(tmp_path, ct):
    """Pixel measures in the per-frame functional groups only: all frames agreeing is read at their spacing; none
    given was refused as 'frames are not on the grid ... frames out of order, a missing frame or uneven spacing'
    (GDCM took 1 mm), one frame differing was read at the first frame's spacing without a word."""
    import SimpleITK as sitk

    from LiverTumorSegLib.io.dicom import DicomSeriesInfo, _check_multiframe

    oblong = CTVolume(ct.array, ImageGeometry(spacing=(0.7, 0.8, 2.5), origin=(-48.0, -60.0, -100.0)))
    for name in ("agree", "none", "differ", "first_lacks"):
        (tmp_path / name).mkdir()
    agree = _pixel_measures_per_frame(write_enhanced_ct(tmp_path / "agree" / "ct.dcm", oblong),
                                      lambda k: ["0.8", "0.7"])
    read = read_volume(agree)
    np.testing.assert_allclose(read.geometry.spacing, (0.7, 0.8, 2.5), atol=1e-4)
    # a reader that took the pixel measures from nowhere (1 mm) gets the frames' spacing set
    image = sitk.ReadImage(str(agree))
    image.SetSpacing((1.0, 1.0, 1.0))
    _check_multiframe(DicomSeriesInfo(uid="1.2.3", files=[str(agree)]), image, tmp_path / "agree")
    np.testing.assert_allclose(image.GetSpacing()[:3], (0.7, 0.8, 2.5), atol=1e-4)
    none = _pixel_measures_per_frame(write_enhanced_ct(tmp_path / "none" / "ct.dcm", oblong), lambda k: None)
    with pytest.raises(InputError, match=r"gives no pixel spacing for any of its frames \(PixelSpacing, 0028,0030, "
                                         r"in a PixelMeasuresSequence .*Re-export the series"):
        read_volume(none)
    first_lacks = _pixel_measures_per_frame(write_enhanced_ct(tmp_path / "first_lacks" / "ct.dcm", oblong),
                                            lambda k: ["0.8", "0.7"] if k else None)
    with pytest.raises(InputError, match=r"no pixel spacing for 1 of its 8 frames \(numbers 1\)"):
        read_volume(first_lacks)
    differ = _pixel_measures_per_frame(write_enhanced_ct(tmp_path / "differ" / "ct.dcm", oblong),
                                       lambda k: ["0.8", "0.7"] if k else ["0.9", "0.7"])
    with pytest.raises(InputError, match=r"different pixel spacings \(0.8\\0.7 mm in frames 2, 3, 4, 5, 6 ...; "
                                         r"0.9\\0.7 mm in frames 1;"):
        read_volume(differ)


def test_a_rescale_slope_of_zero_is_refused_naming_the_files_not_read_as_one(tmp_path, ct):
    """RescaleSlope 0 maps every pixel to the intercept: GDCM read a series with it as slope 1 without a word
    (stored values as HU), and could not read an enhanced CT with it at all ('holds no DICOM series', 'not a
    readable DICOM file')."""
    import pydicom
    import SimpleITK as sitk

    from LiverTumorSegLib.io.dicom import DicomSeriesInfo, _check_multiframe

    every = write_ct_series(tmp_path / "every", ct)
    _retag(every, RescaleSlope="0")
    with pytest.raises(InputError, match=r"RescaleSlope \(0028,1053\) is 0 in its files \('ct0007.dcm', .*maps every "
                                         r"pixel to the RescaleIntercept.*set RescaleSlope to 1"):
        read_volume(tmp_path / "every")
    one = write_ct_series(tmp_path / "one", ct)
    _retag(one[3:4], RescaleSlope="0")
    with pytest.raises(InputError, match=r"is 0 in 1 of its 8 files \('ct0004.dcm'\)"):
        read_volume(tmp_path / "one")
    (tmp_path / "enhanced").mkdir()
    enhanced = write_enhanced_ct(tmp_path / "enhanced" / "ct.dcm", ct)
    good = sitk.ReadImage(str(enhanced))
    ds = pydicom.dcmread(str(enhanced))
    ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0].RescaleSlope = "0"
    save_dicom(ds, enhanced)
    with pytest.raises(InputError, match=r"Folder .* holds no DICOM series the reader can read: RescaleSlope "
                                         r"\(0028,1053\) is 0 in '.*ct.dcm'"):
        read_volume(tmp_path / "enhanced")
    with pytest.raises(InputError, match=r"ct.dcm' cannot be read: RescaleSlope \(0028,1053\) is 0 in this file"):
        read_volume(enhanced)
    # the frames' check, given the frames of a file a reader could read, refuses the slope too (was taken as 1)
    with pytest.raises(InputError, match=r"is 0 in its frames' functional groups"):
        _check_multiframe(DicomSeriesInfo(uid="1.2.3", files=[str(enhanced)]), good, tmp_path / "enhanced")


@pytest.mark.parametrize("tag, value, taken", [("RescaleSlope", "NaN", "slope 1"), ("RescaleSlope", "inf", "slope 1"),
                                                ("RescaleIntercept", "NaN", "intercept 0")])
def test_a_rescale_that_is_no_number_is_refused_not_read_as_no_rescale(tmp_path, ct, tag, value, taken):
    """A RescaleSlope or RescaleIntercept of 'NaN' or 'inf' (a damaged header) was taken by GDCM as slope 1 or
    intercept 0 without a word: the series read with its stored values as HU, exit 0, as a slope of 0 was."""
    files = write_ct_series(tmp_path / "series", ct)
    _retag(files[2:3], **{tag: value})
    number = {"RescaleSlope": "1053", "RescaleIntercept": "1052"}[tag]
    with pytest.raises(InputError, match=rf"{tag} \(0028,{number}\) is '{value}' in 1 of its 8 files \('ct0005.dcm'\), "
                                         rf"not a finite number.*would take {taken} without saying so"):
        read_volume(tmp_path / "series")


def _edited_enhanced_ct(tmp_path, ct, edit):
    """An enhanced (multi-frame) CT of ``ct`` written to ``tmp_path/enhanced/ct.dcm``, its dataset changed by
    ``edit(dataset)`` (pydicom's 'Invalid value for VR DS' warnings, the damage the caller makes, hidden)."""
    import warnings

    import pydicom

    (tmp_path / "enhanced").mkdir()
    enhanced = write_enhanced_ct(tmp_path / "enhanced" / "ct.dcm", ct)
    dataset = pydicom.dcmread(str(enhanced))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        edit(dataset)
        save_dicom(dataset, enhanced, implicit_vr=False)
    return enhanced


def _refused_from_file_and_folder(enhanced, message_pattern):
    """``read_volume`` refuses the enhanced CT file ``enhanced``, and its folder, with an InputError matching
    ``message_pattern``."""
    for given in (enhanced, enhanced.parent):
        with pytest.raises(InputError, match=message_pattern):
            read_volume(given)


@pytest.mark.parametrize("where, tag, number", [("shared", "RescaleSlope", "1053"),
                                                ("shared", "RescaleIntercept", "1052"),
                                                ("frame 4", "RescaleSlope", "1053")])
def test_an_enhanced_ct_whose_rescale_is_no_number_is_refused_naming_it(tmp_path, ct, where, tag, number):
    """An enhanced (multi-frame) CT whose shared functional groups give RescaleSlope 'NaN' was refused as 'not a
    readable DICOM file' (the file) or 'holds no DICOM series' (its folder), and one whose intercept or one
    frame's slope was 'NaN' as setting 'its rescale per frame (1 x + nan, 1 x + nan, ...)' (nan != nan): the
    value is named, as the single-frame series' refusal names it, from the file and from its folder."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    def rescale_nan(dataset):
        if where == "shared":
            setattr(dataset.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0], tag, "NaN")
        else:
            transform = Dataset()
            transform.RescaleSlope, transform.RescaleIntercept = "NaN", "0"
            dataset.PerFrameFunctionalGroupsSequence[3].PixelValueTransformationSequence = Sequence([transform])

    _refused_from_file_and_folder(_edited_enhanced_ct(tmp_path, ct, rescale_nan),
                                  rf"{tag} \(0028,{number}\) is 'NaN' in .*not a finite number, so the Hounsfield "
                                  rf"units cannot be computed.*Re-export the series")


def test_a_negative_rescale_slope_is_refused_not_read_with_the_slice_turned_around(tmp_path, ct):
    """GDCM applied a RescaleSlope of -1 in one file of a series: that slice's air read +1000 HU and its bone
    negative, exit 0 and no warning (measure's lesion mean HU 27 instead of 41)."""
    files = write_ct_series(tmp_path / "series", ct)
    _retag(files[2:3], RescaleSlope="-1")
    with pytest.raises(InputError, match=r"RescaleSlope \(0028,1053\) is negative \(-1\) in 1 of its 8 files "
                                         r"\('ct0005.dcm'\), which turns their values around"):
        read_volume(tmp_path / "series")


def test_a_negative_rescale_slope_of_an_enhanced_ct_is_refused_not_read_turned_around(tmp_path, ct):
    """The negative-slope refusal looked at the top-level RescaleSlope only: an enhanced (multi-frame) CT whose
    shared functional groups give RescaleSlope -1 read with every value turned around (-100..99 HU read as
    -99..100), exit 0, from the file and from its folder."""
    def slope_negative(dataset):
        dataset.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0].RescaleSlope = "-1"

    _refused_from_file_and_folder(_edited_enhanced_ct(tmp_path, ct, slope_negative),
                                  r"RescaleSlope \(0028,1053\) is negative \(-1\) in its frames' functional groups, "
                                  r"which turns their values around")


def test_the_number_an_ambiguous_series_choice_lists_is_the_one_series_takes(tmp_path, ct):
    """'--series Abdomen' matched two of three series and numbered them 1 and 2 among the matches; '--series 1'
    then took the first series of the folder, 'Non contrast'."""
    folder = tmp_path / "study"
    # SeriesNumbers none of the list's numbers: a list number that is another series' SeriesNumber is refused
    # (test_a_series_number_that_is_another_series_place_in_the_list_is_refused)
    for seed, (number, description) in enumerate(((12, "Non contrast"), (11, "Abdomen venous"),
                                                  (13, "Abdomen arterial")), start=1):
        write_ct_series(folder, ct, uid_seed=seed, description=description, series_number=number,
                        name_prefix=f"s{seed}_")
    listed = [s.description for s in find_dicom_series(folder)]
    with pytest.raises(InputError) as refused:
        read_volume(folder, series="Abdomen")
    venous = listed.index("Abdomen venous") + 1
    assert f"  {venous}. " in str(refused.value) and "Non contrast" not in str(refused.value)
    assert read_volume(folder, series=str(venous)).meta["series_description"] == "Abdomen venous"


def test_a_dicom_seg_in_the_folder_does_not_make_the_cts_own_series_number_ambiguous():
    """'segment dcm -o dcm/seg.dcm' (allowed) puts a SEG into the CT's folder; its UID sorted first, so
    '--series 1', the CT's own SeriesNumber, was refused as ambiguous ('number 1 in the listing is the SEG'). A
    derived object (SEG, RTSTRUCT, ...) is no volume --series picks, so the one image series the number names is
    taken; two image series that the number names differently are still refused."""
    from LiverTumorSegLib.io.dicom import DicomSeriesInfo, select_dicom_series

    seg = DicomSeriesInfo(uid="1.2.826.1", description="LiverTumorSeg liver and tumor", modality="SEG",
                          series_number="1001", files=["seg.dcm"])
    venous = DicomSeriesInfo(uid="1.2.840.2", description="venous", modality="CT", series_number="1",
                             files=["s0.dcm", "s1.dcm"])
    assert select_dicom_series([seg, venous], "1", "dcm") is venous
    assert select_dicom_series([venous, seg], "1001", "dcm") is seg  # a SeriesNumber nothing else has
    arterial = DicomSeriesInfo(uid="1.2.826.0", description="arterial", modality="CT", series_number="2",
                               files=["a0.dcm"])
    with pytest.raises(InputError, match="number 1 in the listing is 'arterial', while SeriesNumber 1 is that of "
                                         "'venous'"):
        select_dicom_series([arterial, seg, venous], "1", "dcm")
    # the number's place is a CT and the SeriesNumber only a SEG's: the CT
    seg_numbered = DicomSeriesInfo(uid="1.2.826.1", description="seg", modality="SEG", series_number="2",
                                   files=["seg.dcm"])
    assert select_dicom_series([venous, arterial, seg_numbered], "2", "dcm") is arterial


def test_a_series_number_that_is_another_series_place_in_the_list_is_refused(tmp_path, ct):
    """The listing is ordered by UID, so its numbers are not the SeriesNumbers a PACS shows: '--series 3' typed for
    the PACS's series 3 (the arterial phase here) read the listing's third series (the portal venous one) without a
    word. Where the two meanings name different series it is refused, naming both; the listing shows each series'
    SeriesNumber; a number only one meaning knows is taken (the list's place, or a SeriesNumber beyond the list)."""
    folder = tmp_path / "study"
    for seed, (number, description) in enumerate(((2, "Non contrast"), (1, "Abdomen venous"),
                                                  (3, "Abdomen arterial"), (7, "Delayed")), start=1):
        write_ct_series(folder, ct, uid_seed=seed, description=description, series_number=number,
                        name_prefix=f"s{seed}_")
    listed = [(s.description, s.series_number) for s in find_dicom_series(folder)]
    # the listing's order (by UID, fixed by the seeds): its places and the SeriesNumbers differ
    assert listed == [("Abdomen arterial", "3"), ("Non contrast", "2"), ("Abdomen venous", "1"), ("Delayed", "7")]
    with pytest.raises(InputError) as several:  # no --series: the listing names each SeriesNumber
        read_volume(folder)
    assert "  1. " in str(several.value) and "'Abdomen arterial' (CT, SeriesNumber 3, 8 files)" in str(several.value)
    with pytest.raises(InputError) as refused:  # the PACS's series 3 (arterial) is the listing's third (venous)
        read_volume(folder, series="3")
    assert ("number 3 in the listing is 'Abdomen venous', while SeriesNumber 3 is that of 'Abdomen arterial'. Give "
            "the series' UID (or a unique UID prefix) or its description instead") in str(refused.value)
    with pytest.raises(InputError, match="number 1 in the listing is 'Abdomen arterial', while SeriesNumber 1 is "
                                         "that of 'Abdomen venous'"):
        read_volume(folder, series="1")
    # one series by both meanings, by the listing alone, by its SeriesNumber alone (beyond the listing): taken
    for number, description in (("2", "Non contrast"), ("4", "Delayed"), ("7", "Delayed")):
        assert read_volume(folder, series=number).meta["series_description"] == description
    # the description still picks a series whatever the numbers
    assert read_volume(folder, series="Abdomen arterial").meta["series_description"] == "Abdomen arterial"


def test_a_dicom_seg_written_into_the_study_folder_does_not_hide_the_ct_below(tmp_path, ct):
    """segment study -o study/result.dcm: the next run on study/ read the SEG as the CT ('Modality SEG ... pass
    --allow-non-hu'), and with that option segmented the binary mask."""
    write_ct_series(tmp_path / "study" / "series1", ct)
    write_ct_series(tmp_path / "study", CTVolume(np.zeros((1, 32, 32), np.int16), ct.geometry), uid_seed=9,
                    modality="SEG", description="a segmentation", name_prefix="seg")
    volume = read_volume(tmp_path / "study")
    assert volume.meta["modality"] == "CT" and volume.shape_zyx == ct.shape_zyx
    write_ct_series(tmp_path / "seg_alone", CTVolume(np.zeros((1, 32, 32), np.int16), ct.geometry), uid_seed=9,
                    modality="SEG")
    with pytest.raises(InputError, match="is a SEG object.*not an image"):
        read_volume(tmp_path / "seg_alone", series="1")


def test_a_smaller_scout_in_the_series_is_named(tmp_path, ct):
    """A scout smaller than the slices gave ITK's 'Size: [128, 20, 1]. Check that all its files are complete.'"""
    import pydicom

    files = write_ct_series(tmp_path / "scout", ct)
    scout = pydicom.dcmread(str(files[3]))
    scout.Rows = 20
    scout.PixelData = np.zeros((20, 32), np.int16).tobytes()
    scout.ImagePositionPatient = [f"{v:.6f}" for v in (-48.0, -60.0, 100.0)]
    scout.save_as(str(tmp_path / "scout" / "scout.dcm"))
    Path(files[3]).unlink()
    with pytest.raises(InputError, match="'scout.dcm' 32 x 20, against 32 x 32"):
        read_volume(tmp_path / "scout")


def test_a_latin1_series_description_is_listed_and_chosen_as_written(tmp_path, ct):
    """GDCM hands over the raw bytes: 'portalvenös' in ISO_IR 100 became 'portalven\\udcf6s' and
    --series 'portalvenös' found nothing."""
    write_ct_series(tmp_path / "study", ct, uid_seed=1, description="Abdomen portalvenös", charset="ISO_IR 100",
                    name_prefix="a")
    write_ct_series(tmp_path / "study", ct, uid_seed=2, description="Thorax nativ", charset="ISO_IR 100",
                    name_prefix="b")
    assert "Abdomen portalvenös" in [s.description for s in find_dicom_series(tmp_path / "study")]
    chosen = read_volume(tmp_path / "study", series="portalvenös")
    assert chosen.meta["series_description"] == "Abdomen portalvenös"


@pytest.mark.parametrize("charset, first, second", [
    (["ISO 2022 IR 13", "ISO 2022 IR 87"], "腹部 造影", "腹部 単純"),     # Japanese: escape sequences switch sets
    (["", "ISO 2022 IR 149"], "복부 조영", "복부 단순")])                   # Korean
def test_an_iso2022_series_description_is_listed_and_chosen_as_written(tmp_path, ct, charset, first, second):
    """Japanese text read as its escape codes ('\x1b$BJ"It...'), Korean as Latin-1: neither could be chosen by
    --series."""
    write_ct_series(tmp_path / "study", ct, uid_seed=1, description=first, charset=charset, name_prefix="a")
    write_ct_series(tmp_path / "study", ct, uid_seed=2, description=second, charset=charset, name_prefix="b")
    assert sorted(s.description for s in find_dicom_series(tmp_path / "study")) == sorted([first, second])
    assert read_volume(tmp_path / "study", series=second).meta["series_description"] == second


def _pad_series(files, outside, padding, signed: bool, vr: str, intercept: float = -1024.0, bits_stored: int = 16,
                slope: int = 1):
    """Rewrite each file: stored = (HU - intercept) // slope, with PixelPaddingValue ``padding`` outside the circle, in
    ``bits_stored`` bits of 16 allocated (a negative value sign-extended to 16 bits, as scanners store it)."""
    import pydicom
    for f in files:
        ds = pydicom.dcmread(str(f))
        hu = ds.pixel_array.astype(np.int32)
        stored = (hu - int(intercept)) // slope
        if slope != 1:
            ds.RescaleSlope = f"{slope:g}"
        stored[outside] = padding
        ds.PixelRepresentation = 1 if signed else 0
        ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
        ds.RescaleIntercept = f"{intercept:g}"
        ds.PixelPaddingValue = padding if not signed or padding >= 0 or vr == "SS" else padding & 0xFFFF
        ds["PixelPaddingValue"].VR = vr
        ds.PixelData = stored.astype(np.int16 if signed else np.uint16).tobytes()
        ds.save_as(str(f))


@pytest.mark.parametrize("padding, signed, vr, bits_stored",
                         [(63536, False, "US", 16), (-2000, True, "SS", 16), (-2000, True, "US", 16),
                          (-2000, True, "US", 12)],
                         ids=["unsigned-63536", "signed-minus2000", "signed-written-unsigned",
                              "signed-12-bits-written-unsigned"])
def test_pixel_padding_reads_as_air_not_as_bone(tmp_path, ct, padding, signed, vr, bits_stored):
    """ITK applies the rescale but not PixelPaddingValue: an unsigned series padded with 63536 (intercept -1024)
    read its corners as +62512 HU and was refused as 'shifted by +1024'; a signed one read -3024 HU there. A
    signed 12-bit series whose padding -2000 was written unsigned (63536) was read as padding 59440 (63536 - 2^12)
    and its corners kept -3024 HU."""
    files = write_ct_series(tmp_path / "padded", ct)
    yy, xx = np.mgrid[:32, :32]
    outside = (yy - 15.5) ** 2 + (xx - 15.5) ** 2 > 16 ** 2
    _pad_series(files, outside, padding, signed, vr, bits_stored=bits_stored)
    volume = read_volume(tmp_path / "padded")
    assert volume.meta["padding_voxels"] == int(outside.sum()) * ct.shape_zyx[0]
    assert np.all(volume.array[:, outside] == -1024)
    np.testing.assert_array_equal(volume.array[:, ~outside], np.asarray(ct.array)[:, ~outside])
    assert volume.array.dtype == np.int16


def test_pixel_padding_of_a_series_with_a_rescale_slope_is_found_in_hu(tmp_path, ct):
    """PixelPaddingValue is a stored value: with RescaleSlope 2 and intercept -1024 the padding -2000 reads as
    2 x -2000 - 1024 = -5024 HU, where ITK leaves it; it becomes air. Taken without the slope (-3024 HU) it was not
    found, and the corners stayed at -5024 HU. Inside, each voxel is 2 x stored - 1024 (stored = (HU + 1024) // 2)."""
    files = write_ct_series(tmp_path / "sloped", ct)
    yy, xx = np.mgrid[:32, :32]
    outside = (yy - 15.5) ** 2 + (xx - 15.5) ** 2 > 16 ** 2
    _pad_series(files, outside, -2000, signed=True, vr="SS", slope=2)
    volume = read_volume(tmp_path / "sloped")
    assert volume.meta["padding_voxels"] == int(outside.sum()) * ct.shape_zyx[0]
    assert np.all(volume.array[:, outside] == -1024)
    expected = (np.asarray(ct.array, dtype=np.int32) + 1024) // 2 * 2 - 1024
    np.testing.assert_array_equal(volume.array[:, ~outside], expected[:, ~outside])


def test_padding_inside_the_hu_range_is_left_as_it_is(tmp_path, ct):
    """Padding that maps to a plausible HU (stored 1024 with intercept -1024 is 0 HU, water) cannot be told from
    tissue: every 0 HU voxel inside the body would turn to air. It is left alone."""
    files = write_ct_series(tmp_path / "water_padding", ct)
    outside = np.zeros((32, 32), bool)
    outside[:2, :2] = True
    _pad_series(files, outside, 1024, signed=False, vr="US")
    volume = read_volume(tmp_path / "water_padding")
    assert "padding_voxels" not in volume.meta
    assert np.all(volume.array[:, outside] == 0)


# ---- a scanner-and-PACS audit's reproductions (stop 39) ----------------------------------------------------------
def _retag(files, **changes):
    """Rewrite DICOM ``files`` in place with their file meta / data set attributes changed."""
    import pydicom

    for name in files:
        ds = pydicom.dcmread(str(name))
        for key, value in changes.items():
            if key == "TransferSyntaxUID":  # the data set stays explicit VR little endian: only the label changes
                ds.file_meta.TransferSyntaxUID = value
            else:
                setattr(ds, key, value)
        save_dicom(ds, name, implicit_vr=False)


@pytest.mark.parametrize("uid", ["1.2.840.10008.1.2.4.110", "1.2.826.0.1.3680043.9.1"])
def test_images_in_a_transfer_syntax_the_reader_cannot_decode_are_named(tmp_path, ct, uid):
    """JPEG XL or a vendor's private compression: GDCM lists no series, and the folder 'holds no DICOM series';
    a file of it 'is not a readable DICOM file; give the folder' (back to the first message)."""
    files = write_ct_series(tmp_path / "jxl", ct)
    private = "1.2.826.0.1.3680043.9.1"  # as long as JPEG XL's UID: the bytes are swapped below (pydicom will not
    _retag(files, TransferSyntaxUID=private)  # write a JPEG XL label on uncompressed pixels)
    for name in files:
        name.write_bytes(name.read_bytes().replace(private.encode(), uid.encode(), 1))
    for given in (tmp_path / "jxl", files[2], tmp_path):  # the folder, one file, the study folder above
        with pytest.raises(InputError, match=f"cannot decode \\(transfer syntax .*{uid}.*Decompress"):
            read_volume(given)


def test_the_subfolders_are_listed_once_when_a_folder_holds_no_readable_series(tmp_path, ct, monkeypatch):
    """Looking for files in an undecodable transfer syntax walked the folder tree again right after the series
    search had walked it (each folder listed twice: slow on a network share); it takes the search's folders."""
    from LiverTumorSegLib.io import dicom

    files = write_ct_series(tmp_path / "study" / "jxl", ct)
    _retag(files, TransferSyntaxUID="1.2.826.0.1.3680043.9.1")
    listed = []
    visible_subfolders = dicom._visible_subfolders
    monkeypatch.setattr(dicom, "_visible_subfolders", lambda folder: listed.append(folder) or visible_subfolders(folder))
    with pytest.raises(InputError, match="cannot decode"):
        read_volume(tmp_path)
    assert sorted(listed) == sorted({tmp_path, tmp_path / "study", tmp_path / "study" / "jxl"})


def test_a_single_image_at_the_study_top_does_not_hide_the_ct_series_below(tmp_path, ct):
    """One key image (or a scout) at the study's top made the reader ignore its subfolders: a 1-slice 'CT' was
    segmented (exit 0). Now both series are listed to choose from."""
    study = tmp_path / "study"
    write_ct_series(study / "SER2", ct, uid_seed=2, description="abdomen venous")
    one = CTVolume(np.asarray(ct.array[:1]), ct.geometry)
    write_ct_series(study, one, uid_seed=9, description="key image", name_prefix="key")
    series = find_dicom_series(study)
    assert sorted(s.num_files for s in series) == [1, ct.shape_zyx[0]]
    with pytest.raises(InputError, match=r"(?s)holds 2 DICOM series.*key image.*abdomen venous"):
        read_volume(study)
    chosen = read_volume(study, series="abdomen venous")
    np.testing.assert_array_equal(chosen.array, ct.array)


def test_a_subfolder_with_a_derived_object_only_keeps_the_folders_own_series(tmp_path, ct):
    """The other side of the rule above: a subfolder holding no other image series changes nothing."""
    write_ct_series(tmp_path / "ct", ct)
    (tmp_path / "ct" / "notes").mkdir()
    (tmp_path / "ct" / "notes" / "readme.txt").write_text("not DICOM", encoding="utf-8")
    np.testing.assert_array_equal(read_volume(tmp_path / "ct").array, ct.array)


def test_a_dicom_file_without_an_extension_is_read_as_dicom(tmp_path, ct):
    """IM000016 on a DICOMDIR medium: 'Unknown file type', though README says a file of the series is an input."""
    files = write_ct_series(tmp_path / "SE000001", ct, shuffle_names=False)
    bare = []
    for k, name in enumerate(files):
        target = name.with_name(f"IM{k:06d}")
        name.rename(target)
        bare.append(target)
    volume = read_volume(bare[3])
    np.testing.assert_array_equal(volume.array, ct.array)


def test_two_copies_of_one_series_are_named_as_copies(tmp_path, ct):
    """The same export twice in one tree was blamed on 'several acquisitions' (export each on its own)."""
    write_ct_series(tmp_path / "export1", ct)
    write_ct_series(tmp_path / "export2", ct)
    with pytest.raises(InputError, match="same images more than once .*two copies"):
        read_volume(tmp_path)


def test_files_with_a_meta_header_but_no_preamble_are_named(tmp_path, ct):
    """GDCM lists such files, then ITK refuses them: 'Check that all its files are complete' (they are)."""
    files = write_ct_series(tmp_path / "bare", ct)
    for name in files:
        data = name.read_bytes()
        name.write_bytes(data[132:])  # drop the 128-byte preamble and 'DICM', keep the group 0002 header
    with pytest.raises(InputError, match="lack the 128-byte preamble"):
        read_volume(tmp_path / "bare")


def test_series_in_different_folders_are_listed_with_their_folders(tmp_path, ct):
    """Two patients' 'abdomen' series in PAT1/ and PAT2/ were two identical lines, and --series was the only
    advice (it segments one patient)."""
    write_ct_series(tmp_path / "PAT1", ct, uid_seed=1, description="abdomen")
    write_ct_series(tmp_path / "PAT2", ct, uid_seed=2, description="abdomen")
    with pytest.raises(InputError) as info:
        read_volume(tmp_path)
    text = str(info.value)
    assert "in 'PAT1'" in text and "in 'PAT2'" in text and "CSV" in text


def test_evaluate_takes_a_dicom_series_folder_as_the_one_cases_ct(tmp_path, ct, monkeypatch):
    """--images DICOM_FOLDER (the CT as segment takes it) warned 'has no file for 1 case' and drew the overlay on
    black; now the series is the case's CT. With several cases it is refused, naming why."""
    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.io import write_label_map

    write_ct_series(tmp_path / "ct", ct)
    labels = (np.asarray(ct.array) > 20).astype(np.uint8)
    write_label_map(tmp_path / "case.nii.gz", labels, ct.geometry)
    from LiverTumorSegLib.commands import evaluate

    backgrounds = []
    real = evaluate.optional_inputs
    monkeypatch.setattr(evaluate, "optional_inputs",
                        lambda path, cases, what, *rest: backgrounds.append(real(path, cases, what, *rest))
                        or backgrounds[-1])
    (tmp_path / "pred.nii.gz").write_bytes((tmp_path / "case.nii.gz").read_bytes())
    code = main(["evaluate", "--pred", str(tmp_path / "pred.nii.gz"), "--ref", str(tmp_path / "case.nii.gz"),
                 "-o", str(tmp_path / "eval"), "--images", str(tmp_path / "ct"), "--no-surface"])
    assert code == 0
    assert {"case": tmp_path / "ct"} in backgrounds
    assert list((tmp_path / "eval" / "plots").glob("overlay_*.png"))
    (tmp_path / "other.nii.gz").write_bytes((tmp_path / "case.nii.gz").read_bytes())
    with pytest.raises(InputError, match="is a DICOM folder \\(one CT\\) but 2 cases"):
        real(str(tmp_path / "ct"), ["case", "other"], "--images")


def test_which_evaluate_options_take_a_dicom_series_folder_follows_their_role(tmp_path, ct, monkeypatch):
    """optional_inputs took a DICOM folder only for the text '--images'; the options' roles (ROLE_OF_OPTION) say it
    now: a CT option takes one, a probability map option does not."""
    from LiverTumorSegLib.commands import evaluate

    write_ct_series(tmp_path / "ct", ct)
    assert evaluate.optional_inputs(str(tmp_path / "ct"), ["case"], "--images") == {"case": tmp_path / "ct"}
    assert evaluate.optional_inputs(str(tmp_path / "ct"), ["case"], "--prob") == {}  # warned: no file for the case
    monkeypatch.setitem(evaluate.ROLE_OF_OPTION, "--ct", "image")
    assert evaluate.optional_inputs(str(tmp_path / "ct"), ["case"], "--ct") == {"case": tmp_path / "ct"}


def test_a_dicom_folder_segmented_to_a_folder_name_is_told_what_to_give(tmp_path):
    from LiverTumorSegLib.inference.segmenter import check_output_format

    with pytest.raises(InputError, match=r"no file extension: one CT .* e\.g\. -o .*out\.nii\.gz\..*CSV"):
        check_output_format(tmp_path / "out")
    # '-o .' was advised '..nii.gz'; a name with a space is quoted to paste (the portability audit)
    from LiverTumorSegLib.fileutil import shell_word
    for given, advised in ((".", "-o seg.nii.gz"), ("..", f"-o {Path('..', 'seg.nii.gz')}"),
                           ("my out", f"-o {shell_word('my out.nii.gz')}")):
        with pytest.raises(InputError) as refused:
            check_output_format(Path(given))
        assert f"e.g. {advised}. An output folder" in str(refused.value), given


# ---- the series listing: every header read once, the series and file order GDCM gives ----------------------------
def _gdcm_listing(folder: Path, recursive: bool = False):
    """``[(series UID, files)]`` as SimpleITK's GDCM scan lists ``folder`` (the listing the reader used to take)."""
    import SimpleITK as sitk

    ids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    if recursive:
        for sub in sorted(p for p in folder.rglob("*") if p.is_dir()):
            ids += [uid for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(sub)) if uid not in ids]
    return [(uid, list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid, False, recursive)))
            for uid in ids]


def _ours(folder: Path, recursive: bool = False):
    from LiverTumorSegLib.io import list_dicom_series

    return [(s.uid, s.files) for s in list_dicom_series(folder, recursive=recursive)]


def _oblique(ct):
    c, s = np.cos(np.radians(20.0)), np.sin(np.radians(20.0))
    return CTVolume(ct.array, ImageGeometry(spacing=ct.geometry.spacing, origin=ct.geometry.origin,
                                            direction=(c, 0.0, s, 0.0, 1.0, 0.0, -s, 0.0, c)))


@pytest.mark.parametrize("layout", ["by position", "oblique", "same position: by instance number",
                                    "same position and number: by name", "two series, nested folders"])
def test_series_and_their_files_are_listed_in_the_order_gdcm_gives(tmp_path, ct, layout):
    """The listing reads each header once and sorts the files itself; the series, their files and the files'
    order must stay those of GDCM's own scan (the reader builds the grid from that order)."""
    folder = tmp_path / "study"
    if layout == "oblique":
        write_ct_series(folder, _oblique(ct))
    elif layout == "two series, nested folders":
        write_ct_series(folder / "PAT" / "SER1", ct, uid_seed=1)
        write_ct_series(folder / "PAT" / "SER2", ct, uid_seed=2, shuffle_names=False)
        write_ct_series(folder / "PAT" / "SER2" / "more", CTVolume(ct.array[:2], ct.geometry), uid_seed=2,
                        name_prefix="more")
        write_ct_series(folder, CTVolume(ct.array[:1], ct.geometry), uid_seed=3, name_prefix="key")
    else:
        files = write_ct_series(folder, ct)
        if layout != "by position":
            _retag(files, ImagePositionPatient=["0", "0", "0"])
        if layout == "same position and number: by name":
            _retag(files, InstanceNumber=1)
    recursive = layout == "two series, nested folders"
    assert _ours(folder, recursive) == _gdcm_listing(folder, recursive)
    if not recursive:
        assert len(_ours(folder)[0][1]) == ct.shape_zyx[0]


def test_finding_the_series_of_a_study_reads_each_header_once(tmp_path, ct):
    """find_dicom_series read every file in a folder 2-4 times (GDCM's series-ID scan, one more scan per series for
    its file names, the first file again for the description; a study with subfolders scanned again
    recursively). The series it finds are GDCM's, with the same files in the same order."""
    import collections

    import SimpleITK as sitk

    study = tmp_path / "study"
    write_ct_series(study / "SER1", ct, uid_seed=1, description="abdomen venous")
    write_ct_series(study / "SER2", ct, uid_seed=2, description="abdomen arterial")
    write_ct_series(study, CTVolume(ct.array[:1], ct.geometry), uid_seed=9, description="key image", name_prefix="key")
    expected = _gdcm_listing(study, recursive=True)
    every_file = sorted(str(p) for p in study.rglob("*.dcm"))
    reads = collections.Counter()

    def below(folder, recursive):  # the files a GDCM scan of ``folder`` reads
        return [f for f in every_file if Path(f).parent == Path(folder)
                or (recursive and Path(folder) in Path(f).parents)]

    real_information = sitk.ImageFileReader.ReadImageInformation
    real_ids, real_names = sitk.ImageSeriesReader.GetGDCMSeriesIDs, sitk.ImageSeriesReader.GetGDCMSeriesFileNames
    with pytest.MonkeyPatch.context() as patch:  # a GDCM scan reads every file of the folder it scans
        patch.setattr(sitk.ImageFileReader, "ReadImageInformation",
                      lambda self: reads.update([self.GetFileName()]) or real_information(self))
        patch.setattr(sitk.ImageSeriesReader, "GetGDCMSeriesIDs",
                      staticmethod(lambda folder, *a: reads.update(below(folder, False)) or real_ids(folder, *a)))
        patch.setattr(sitk.ImageSeriesReader, "GetGDCMSeriesFileNames",
                      staticmethod(lambda folder, uid, details=False, recursive=False, *a:
                                   reads.update(below(folder, recursive))
                                   or real_names(folder, uid, details, recursive, *a)))
        series = find_dicom_series(study)
    assert sorted(reads) == every_file and set(reads.values()) == {1}, reads
    assert [(s.uid, s.files) for s in series] == expected
    assert [s.description for s in series] == ["key image", "abdomen venous", "abdomen arterial"]


def test_reading_a_series_reads_its_first_files_header_once(tmp_path, ct, monkeypatch):
    """The series listing reads every file's header once; the memory check then read the first file's (GDCM
    order) a second time for its size and pixel type. It now takes them from the listing, and refuses and accepts
    exactly as before: the 8 x 32 x 32 int16 series needs estimate_memory_bytes((8, 32, 32), 2)."""
    import collections

    import SimpleITK as sitk

    from LiverTumorSegLib import validation
    from LiverTumorSegLib.errors import ResourceError
    from LiverTumorSegLib.io import DicomSeriesInfo
    from LiverTumorSegLib.io.dicom import _check_dicom_series_memory

    folder = tmp_path / "series"
    write_ct_series(folder, ct)
    reads = collections.Counter()
    real_information = sitk.ImageFileReader.ReadImageInformation
    monkeypatch.setattr(sitk.ImageFileReader, "ReadImageInformation",
                        lambda self: reads.update([self.GetFileName()]) or real_information(self))
    volume = read_volume(folder)
    np.testing.assert_array_equal(volume.array, ct.array)
    first = volume.meta["files"][0]
    assert reads[first] == 1 and sorted(reads) == sorted(str(f) for f in folder.iterdir()), reads
    assert set(reads.values()) == {1}, reads
    needed = validation.estimate_memory_bytes(ct.shape_zyx, input_itemsize=2)
    monkeypatch.setattr(validation, "available_memory_bytes", lambda *a, **k: needed - 1)
    with pytest.raises(ResourceError, match=rf"^Processing '{folder} \(series [0-9.]+\)' \(z, y, x\) \(8, 32, 32\) "
                                            r"needs about"):
        read_volume(folder)
    by_hand = DicomSeriesInfo(uid="1.2.3", files=list(volume.meta["files"]))  # no header from a listing: read
    with pytest.raises(ResourceError, match=r"\(series 1\.2\.3\)' \(z, y, x\) \(8, 32, 32\) needs about"):
        _check_dicom_series_memory(by_hand, folder)
    monkeypatch.setattr(validation, "available_memory_bytes", lambda *a, **k: needed)
    np.testing.assert_array_equal(read_volume(folder).array, ct.array)


def test_a_series_continued_in_a_subfolder_is_read_whole(tmp_path):
    """4 slices in the study folder and 4 more of the same series below it: only the top 4 were read, without a
    word, although the docstring promised a split series read whole (found by review)."""
    ct = np.arange(8 * 16 * 16, dtype=np.int16).reshape(8, 16, 16) % 700 - 200
    write_ct_series(tmp_path, CTVolume(ct[:4], ImageGeometry(spacing=(1, 1, 2), origin=(0, 0, 0))), uid_seed=1)
    write_ct_series(tmp_path / "more", CTVolume(ct[4:], ImageGeometry(spacing=(1, 1, 2), origin=(0, 0, 8))),
                    uid_seed=1, name_prefix="m")
    assert [s.num_files for s in find_dicom_series(tmp_path)] == [8]
    assert np.array_equal(read_volume(tmp_path).array, ct)


def test_hidden_files_beside_a_series_are_not_slices(tmp_path, ct):
    """GDCM's scan leaves out hidden files on Linux and macOS; a hidden copy of a slice (an rsync temporary)
    beside a series made the listing hold the same image twice and the read fail (found by review)."""
    files = write_ct_series(tmp_path, ct)
    (tmp_path / f".{files[3].name}.Xy12ab").write_bytes(files[3].read_bytes())
    assert [s.num_files for s in find_dicom_series(tmp_path)] == [len(files)]
    assert read_volume(tmp_path).shape_zyx == ct.shape_zyx


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="these file systems hold only Unicode names")
def test_a_file_name_that_is_not_utf8_is_a_clear_error_not_a_crash(tmp_path, ct):
    """GDCM given such a name ended the whole process (C++ 'basic_string' abort) in the listing and the read."""
    files = write_ct_series(tmp_path, ct)
    os.rename(bytes(files[0]), bytes(tmp_path) + b"/ct\xe9.dcm")
    with pytest.raises(InputError, match=r"DICOM file .*ct\\xe9\.dcm.* not valid UTF-8; rename it"):
        find_dicom_series(tmp_path)


def test_a_copy_of_the_series_in_a_subfolder_is_not_read_as_more_slices(tmp_path, ct):
    """A backup copy of a series' files below its folder is no continuation: the folder's own series is read, as
    before the split-series rule (which first gathered the copy too and refused 'the same images twice')."""
    import shutil

    files = write_ct_series(tmp_path, ct)
    (tmp_path / "backup").mkdir()
    for f in files:
        shutil.copy2(f, tmp_path / "backup" / f.name)
    assert [s.num_files for s in find_dicom_series(tmp_path)] == [len(files)]
    assert np.array_equal(read_volume(tmp_path).array, ct.array)


# ---- the subfolder search's limits: a stop is said, a series it may have cut is refused -------------------------
def _split_series(ct, first: Path, second: Path) -> np.ndarray:
    """The first half of a small series' slices written in ``first``, the second half in ``second``; returns all
    the slices (HU)."""
    slices = np.arange(8 * 16 * 16, dtype=np.int16).reshape(8, 16, 16) % 700 - 200
    write_ct_series(first, CTVolume(slices[:4], ImageGeometry(spacing=(1, 1, 2), origin=(0, 0, 0))), uid_seed=1)
    write_ct_series(second, CTVolume(slices[4:], ImageGeometry(spacing=(1, 1, 2), origin=(0, 0, 8))), uid_seed=1,
                    name_prefix="m")
    return slices


def test_a_series_split_beyond_the_depth_searched_is_refused_not_read_in_part(tmp_path, ct, monkeypatch):
    """A series split over subfolders whose second part lies deeper than the search goes was read from its first
    part alone (4 of 8 slices), without a word: a wrong segmentation and wrong volumes. Refused now, saying where
    the search stopped; the folder that holds the whole series is read whole."""
    from LiverTumorSegLib.io import dicom

    monkeypatch.setattr(dicom, "MAX_SUBFOLDER_DEPTH", 3)
    export = tmp_path / "export"
    slices = _split_series(ct, export / "PAT" / "STUDY" / "part1", export / "PAT" / "STUDY" / "deeper" / "part2")
    with pytest.raises(InputError, match=r"has files in its subfolders \(4 files found, in 'PAT/STUDY/part1'\), "
                                         r"but their search stopped 3 levels deep \(not searched: below "
                                         r"'PAT/STUDY/deeper'\).*Give the folder that holds the whole series"):
        read_volume(export)
    with pytest.raises(InputError, match="stopped 3 levels deep"):
        read_volume(export, series="1")  # chosen by hand: still possibly in part
    whole = read_volume(export / "PAT" / "STUDY")
    assert np.array_equal(whole.array, slices) and not whole.meta.get("warnings")


def test_a_series_split_beyond_the_folders_counted_is_refused_and_the_listing_says_it_may_be_incomplete(
        tmp_path, ct, monkeypatch):
    """The search stops after MAX_SUBFOLDERS folders: a series split over A/s1 and A/s2 was read from A/s1 alone
    when the count ran out between them, and a listing of several series did not say it may miss some."""
    from LiverTumorSegLib.io import dicom

    monkeypatch.setattr(dicom, "MAX_SUBFOLDERS", 3)
    export = tmp_path / "export"
    slices = _split_series(ct, export / "A" / "s1", export / "A" / "s2")
    (export / "B").mkdir()  # searched: A, B, A/s1
    # A/s1 and B hold no subfolders: nothing below them went unsearched, so only A/s2 is named
    with pytest.raises(InputError, match=r"4 files found, in 'A/s1'\), but their search stopped after 3 folders "
                                         r"\(not searched: 'A/s2'\):"):
        read_volume(export)
    write_ct_series(export / "B", ct, uid_seed=2, description="another series")
    with pytest.raises(InputError, match=r"holds 2 DICOM series(.|\n)*search of its subfolders stopped after 3 "
                                         r"folders(.|\n)*this list may miss series"):
        read_volume(export)
    assert np.array_equal(read_volume(export / "A").array, slices)


def test_the_subfolder_search_skips_a_macos_zip_copy_as_the_file_listing_does(tmp_path, ct, monkeypatch):
    """A macOS zip's __MACOSX/ tree (only ._ resource files, which the series listing leaves out) was searched
    like any subfolder: it counted against the search's limits, and a deep one made a series read from its own
    folder come with a warning that the search stopped there."""
    from LiverTumorSegLib.io import dicom

    monkeypatch.setattr(dicom, "MAX_SUBFOLDER_DEPTH", 2)
    write_ct_series(tmp_path / "series", ct)
    (tmp_path / "series" / "__MACOSX" / "series" / "old").mkdir(parents=True)
    assert dicom._subfolder_search(tmp_path / "series").folders == []
    volume = read_volume(tmp_path / "series")
    assert volume.shape_zyx == ct.shape_zyx and not volume.meta.get("warnings"), volume.meta.get("warnings")


def test_a_search_stopped_by_the_folder_count_names_the_folders_it_did_not_search(tmp_path, monkeypatch):
    """With the count at 5 and a, b, c each holding x, y, z, the search looks at a, b, c, a/x and a/y. It said
    "not searched: below 'a'", wrong both ways: a/x and a/y were searched, and b and c were not searched below
    (the folders still queued were dropped). Now it names a/z (not looked at) and the folders whose subfolders it
    did not look at: b and c. a/x and a/y have no subfolders, so nothing below them went unsearched (they were
    named too, which sent a reader looking for folders that do not exist)."""
    from LiverTumorSegLib.io import dicom

    monkeypatch.setattr(dicom, "MAX_SUBFOLDERS", 5)
    for top in "abc":
        for sub in "xyz":
            (tmp_path / top / sub).mkdir(parents=True)
    search = dicom._subfolder_search(tmp_path)
    relative = lambda folders: [p.relative_to(tmp_path).as_posix() for p in folders]  # noqa: E731
    assert relative(search.folders) == ["a", "b", "c", "a/x", "a/y"]
    assert relative(search.skipped) == ["a/z"]
    assert relative(search.unsearched) == ["b", "c"]
    stop = "stopped after 5 folders (not searched: 'a/z'; below 'b' and 1 more folder(s))"
    assert dicom._search_stop_text(search, tmp_path) == stop
    with pytest.raises(InputError, match=re.escape(f"as far as they were searched: the search {stop}.")):
        read_volume(tmp_path)


def test_a_series_in_the_folder_itself_is_read_with_a_warning_when_its_subfolders_were_not_all_searched(
        tmp_path, ct, monkeypatch):
    """Subfolders deeper than the search below a series folder: nothing suggests the series continues there, so
    it is read, but the run says the search stopped (it said nothing); a folder without any series says where
    its search stopped instead of only 'holds no DICOM series'."""
    from LiverTumorSegLib.io import dicom

    monkeypatch.setattr(dicom, "MAX_SUBFOLDER_DEPTH", 2)
    write_ct_series(tmp_path / "series", ct)
    (tmp_path / "series" / "notes" / "old" / "older" / "oldest").mkdir(parents=True)
    volume = read_volume(tmp_path / "series")
    assert volume.shape_zyx == ct.shape_zyx
    assert any("stopped 2 levels deep (not searched: below 'notes/old')" in w and "read from the folder itself" in w
               for w in volume.meta.get("warnings", [])), volume.meta.get("warnings")
    from LiverTumorSegLib.validation import check_ct

    assert any("stopped 2 levels deep" in w for w in check_ct(volume))  # what segment prints and reports
    with pytest.raises(InputError, match=r"nor do its subfolders as far as they were searched: the search stopped "
                                         r"2 levels deep \(not searched: below 'old/older'\)"):
        read_volume(tmp_path / "series" / "notes")


@pytest.mark.parametrize("damage", ["end_cut_short", "first_cut_in_half", "last_empty", "middle_cut_short"])
def test_a_damaged_slice_file_is_named_not_left_out(tmp_path, ct, damage):
    """A series whose last file lacked its final 100 bytes was read as 19 of its 20 slices without a word (the
    series scan leaves out files it cannot read, and a slice lost at an end leaves no gap); a damaged middle slice
    was refused only as 'uneven slice spacing'. Every such file is now named."""
    files = write_ct_series(tmp_path / "series", ct, shuffle_names=False)  # files[k] holds slice k
    assert read_volume(tmp_path / "series").shape_zyx == ct.shape_zyx
    target = {"end_cut_short": files[-1], "first_cut_in_half": files[0], "last_empty": files[-1],
              "middle_cut_short": files[len(files) // 2]}[damage]
    data = target.read_bytes()
    target.write_bytes({"end_cut_short": data[:-100], "first_cut_in_half": data[:len(data) // 2], "last_empty": b"",
                        "middle_cut_short": data[:-100]}[damage])
    # GDCM of SimpleITK >= 2.3 lists no cut-short file in the series; 2.2's lists it, and the pixel-data check names it
    beside = rf"1 file\(s\) beside DICOM series .* cannot be read \('{target.name}'\)"
    in_series = rf"DICOM file '{target.name}' of series .* holds \d+ bytes of pixel data, but its header describes"
    with pytest.raises(InputError, match=rf"({beside}|{in_series}).*Copy or export the series again"):
        read_volume(tmp_path / "series")


@pytest.mark.parametrize("damage", ["first_cut_in_preamble", "last_magic_flipped", "last_meta_sop_class_damaged_and_cut_short"])
def test_a_slice_file_damaged_before_its_meta_header_is_named_not_left_out(tmp_path, ct, damage):
    """A slice file cut short inside its 128-byte preamble, or whose 'DICM' marker or meta header's SOP Class UID was
    damaged, has no meta header to say it is a CT image: the series was read without that slice without a word (found by fuzzing the readers; 7 of 8
    slices, the first or last lost, leaving no gap). A file named like the series' files that GDCM cannot read is now
    named too."""
    files = write_ct_series(tmp_path / "series", ct, shuffle_names=False)  # files[k] holds slice k
    target = files[0] if damage == "first_cut_in_preamble" else files[-1]
    data = bytearray(target.read_bytes())
    if damage == "first_cut_in_preamble":
        data = data[:60]
    elif damage == "last_magic_flipped":
        data[128] ^= 0x01  # 'DICM' -> 'EICM'
    else:  # a byte of the meta header's MediaStorageSOPClassUID (no UID then), and the file cut short
        data[bytes(data).index(b"1.2.840.10008.5.1.4.1.1.2") + 13] = 0xFF
        data = data[:-100]
    target.write_bytes(bytes(data))
    # as a cut-short file above: SimpleITK 2.2's GDCM lists the last one in the series, and the pixel-data check names it
    beside = rf"1 file\(s\) beside DICOM series .* cannot be read \('{target.name}'\)"
    in_series = rf"DICOM file '{target.name}' of series .* holds \d+ bytes of pixel data, but its header describes"
    with pytest.raises(InputError, match=rf"({beside}|{in_series}).*Copy or export the series again"):
        read_volume(tmp_path / "series")


def test_unreadable_files_that_are_not_ct_images_do_not_stop_the_series(tmp_path, ct):
    """A damaged file of another kind (not a CT image by its meta header), junk, and an empty file named unlike the
    series' files are left out as before: nothing says they belong to the series."""
    files = write_ct_series(tmp_path / "series", ct)
    other = bytearray(files[0].read_bytes()[:600])
    uid = b"1.2.840.10008.5.1.4.1.1.2\x00"
    at = bytes(other).index(uid)
    other[at:at + len(uid)] = b"1.2.840.10008.5.1.4.1.1.4\x00"  # MR Image Storage, same length
    (tmp_path / "series" / "broken_mr.dcm").write_bytes(bytes(other))
    (tmp_path / "series" / "notes.txt").write_text("not DICOM")
    (tmp_path / "series" / "LOCK").write_bytes(b"")
    assert read_volume(tmp_path / "series").shape_zyx == ct.shape_zyx


def test_a_series_whose_later_slices_have_a_fractional_slope_keeps_their_half_hu(tmp_path, ct):
    """ITK takes the voxel type from the first file: slope 1 there made the volume int16, and slices stored with
    slope 0.5 lost their half HU (up to 0.5 HU off, no warning). Whole intercepts that differ per slice stay int16."""
    import pydicom

    hu = np.asarray(ct.array, dtype=np.float64)
    hu[1:] += 0.5  # the slices with slope 0.5 hold half HU
    files = write_ct_series(tmp_path / "mixed", ct, shuffle_names=False)
    for k, name in enumerate(files):
        if k == 0:
            continue
        ds = pydicom.dcmread(str(name))
        ds.RescaleSlope, ds.RescaleIntercept = "0.5", "-1024"
        ds.PixelData = np.round((hu[k] + 1024) / 0.5).astype(np.int16).tobytes()
        save_dicom(ds, name)
    read = read_volume(tmp_path / "mixed")
    assert read.array.dtype == np.float32
    np.testing.assert_array_equal(read.array, hu.astype(np.float32))

    files = write_ct_series(tmp_path / "intercepts", ct, shuffle_names=False, uid_seed=2)
    for k, name in enumerate(files):  # another whole intercept per slice: exact in int16
        ds = pydicom.dcmread(str(name))
        ds.RescaleIntercept = str(-7 * k)
        ds.PixelData = (np.asarray(ct.array[k], dtype=np.int16) + 7 * k).astype(np.int16).tobytes()
        save_dicom(ds, name)
    read = read_volume(tmp_path / "intercepts")
    assert read.array.dtype == np.int16
    np.testing.assert_array_equal(read.array, np.asarray(ct.array, dtype=np.int16))


def test_a_single_slice_without_a_thickness_in_its_header_is_read_with_a_warning(tmp_path, ct):
    """A 1-slice series with neither SliceThickness nor SpacingBetweenSlices got ITK's 1 mm without a word: a
    4 mm slice's liver measured 23.6 mL instead of 94.4 mL (helper-25's audit). The volume is read as before, and
    its warnings say that its volumes are not the real ones; a slice that gives its thickness reads it."""
    import pydicom

    one = CTVolume(np.asarray(ct.array[:1]), ct.geometry)
    files = write_ct_series(tmp_path / "given", one, uid_seed=3)
    given = read_volume(tmp_path / "given")
    assert given.spacing_zyx[0] == pytest.approx(ct.spacing_zyx[0])
    assert not any("neither SliceThickness" in w for w in given.meta.get("warnings", []))
    files = write_ct_series(tmp_path / "bare", one, uid_seed=4)
    for name in files:
        ds = pydicom.dcmread(str(name))
        del ds.SliceThickness, ds.SpacingBetweenSlices
        ds.save_as(str(name))
    bare = read_volume(tmp_path / "bare")
    assert bare.spacing_zyx[0] == 1.0
    assert any("neither SliceThickness nor SpacingBetweenSlices; its thickness is taken as 1 mm" in w
               for w in bare.meta["warnings"])


def test_commands_without_series_say_so_for_a_folder_of_several_series(tmp_path, ct):
    """followup's --baseline-ct/--followup-ct and evaluate's --images, given a folder of two series, answered
    'choose one with --series', an option neither command has (helper-34's audit). They now say to give the folder
    of the one series wanted, and still list the series."""
    from LiverTumorSegLib.commands import read_checked_ct, read_one_series

    write_ct_series(tmp_path / "study", ct, uid_seed=2, description="abdomen venous", name_prefix="a")
    write_ct_series(tmp_path / "study", ct, uid_seed=3, description="abdomen arterial", name_prefix="b")
    with pytest.raises(InputError, match=r"(?s)holds 2 DICOM series; followup has no --series: give the folder "
                                         r"that holds only the series you want.*abdomen arterial.*abdomen venous") as info:
        read_checked_ct(tmp_path / "study", allow_non_hu=True, command="followup")
    assert "choose one with" not in str(info.value)
    with pytest.raises(InputError, match="evaluate has no --series"):
        read_one_series(tmp_path / "study", "evaluate")
    with pytest.raises(InputError, match="choose one with series="):  # commands with a series option keep their advice
        read_checked_ct(tmp_path / "study")


@pytest.mark.parametrize("damage", ["half", "columns"])
def test_pixel_data_of_another_size_than_the_header_describes_is_refused(tmp_path, damage):
    """Pixel Data cut to half its length was read with the missing half from uninitialised memory (4 false tumors,
    exit 0), and Columns edited from 40 to 30 sheared every slice (a 0.4 mL liver; the fuzzing audit)."""
    pydicom = pytest.importorskip("pydicom")
    phantom = make_phantom(shape_zyx=(4, 36, 40), spacing_xyz=(1.0, 1.0, 3.0), seed=2)
    files = write_ct_series(tmp_path / "ct", phantom.ct)
    read_volume(tmp_path / "ct")  # intact: read
    ds = pydicom.dcmread(str(files[1]))
    if damage == "half":
        ds.PixelData = ds.PixelData[:len(ds.PixelData) // 2]
        said = r"holds 1440 bytes of pixel data, but its header describes 2880 \(36 rows x 40 columns of 16 bits\)"
    else:
        ds.Columns = 30
        said = r"holds 2880 bytes of pixel data, but its header describes 2160 \(36 rows x 30 columns"
    ds.save_as(str(files[1]))
    with pytest.raises(InputError, match=said):
        read_volume(tmp_path / "ct")


@pytest.mark.parametrize("orientation", [[0, 0, 0, 0, 0, 0], [0.9, 0.1, 0, 0, 1, 0], [1, 0, 0, 1, 0, 0]])
def test_an_orientation_that_is_no_rotation_is_refused_not_taken_as_the_identity(tmp_path, orientation):
    """ImageOrientationPatient 0\\0\\0\\0\\0\\0 or 0.9\\0.1\\0\\0\\1\\0 was read as the identity without a word: the CT
    came out rotated and its liver measured 68 mL instead of 381 mL (the fuzzing audit)."""
    pydicom = pytest.importorskip("pydicom")
    phantom = make_phantom(shape_zyx=(4, 36, 40), spacing_xyz=(1.0, 1.0, 3.0), seed=2)
    files = write_ct_series(tmp_path / "ct", phantom.ct)
    for name in files:
        ds = pydicom.dcmread(str(name))
        ds.ImageOrientationPatient = orientation
        ds.save_as(str(name))
    with pytest.raises(InputError, match="ImageOrientationPatient .* not two perpendicular unit directions"):
        read_volume(tmp_path / "ct")


def test_an_orientation_gdcm_would_drop_is_refused_and_one_it_keeps_is_read_as_written(tmp_path):
    """A series turned 20 degrees whose ImageOrientationPatient was written to too few digits (row . column =
    -0.0017, inside the reader's old 1 % but beyond GDCM's 0.001) was read as axial and unturned without a word:
    its corners lay 164 mm from where its header puts them (the DICOM audit)."""
    pydicom = pytest.importorskip("pydicom")
    phantom = make_phantom(shape_zyx=(4, 36, 40), spacing_xyz=(1.0, 1.0, 3.0), seed=2)
    angle = np.radians(20.0)
    exact = [np.cos(angle), np.sin(angle), 0.0, -np.sin(angle), np.cos(angle), 0.0]
    for name, orientation, refused in (("coarse", ["0.939693", "0.342020", "0", "-0.343660", "0.939094", "0"], True),
                                       ("fine", [f"{v:.6f}" for v in exact], False)):
        files = write_ct_series(tmp_path / name, phantom.ct)
        for index, path in enumerate(files):
            ds = pydicom.dcmread(str(path))
            ds.ImageOrientationPatient = orientation
            ds.ImagePositionPatient = [0.0, 0.0, 3.0 * index]
            ds.save_as(str(path))
        if refused:
            with pytest.raises(InputError, match=r"not two perpendicular unit directions \(within 0.001"):
                read_volume(tmp_path / name)
        else:
            direction = np.asarray(read_volume(tmp_path / name).geometry.direction_matrix)  # LPS columns
            np.testing.assert_allclose(direction[:, 0], exact[:3], atol=1e-5)
            np.testing.assert_allclose(direction[:, 1], exact[3:], atol=1e-5)


def _set_acquisition_numbers(files, numbers):
    """Rewrite DICOM ``files`` (slice order) with AcquisitionNumber ``numbers[k]`` for slice k."""
    import pydicom

    for name, number in zip(files, numbers):
        ds = pydicom.dcmread(str(name))
        ds.AcquisitionNumber = number
        save_dicom(ds, name)


def test_acquisitions_that_alternate_along_the_scan_are_refused_and_consecutive_ones_read(tmp_path, ct):
    """Two scans stored as one series, slices half a slice apart (a series of 2 mm slices from acquisitions 1 and 2
    in turn), were read as one volume of 2 mm slices from both without a word. Acquisitions that follow each other
    along the scan (one per rotation of a step-and-shoot scan) are one volume."""
    interleaved = write_ct_series(tmp_path / "interleaved", ct)
    _set_acquisition_numbers(interleaved, [1, 2] * 4)
    with pytest.raises(InputError, match=r"mixes 2 acquisitions whose slices alternate along the scan "
                                         r"\(AcquisitionNumber, slice by slice from one end: 1, 2, 1, 2, 1, 2, 1, 2\)"
                                         r".*Export each acquisition as its own series"):
        read_volume(tmp_path / "interleaved")
    consecutive = write_ct_series(tmp_path / "consecutive", ct)
    _set_acquisition_numbers(consecutive, [3, 3, 3, 3, 4, 4, 4, 4])
    volume = read_volume(tmp_path / "consecutive")
    np.testing.assert_array_equal(volume.array, np.asarray(ct.array))
    assert volume.geometry.almost_equal(ct.geometry)
    overlapping = write_ct_series(tmp_path / "overlapping", ct)  # rotations 1 and 2 swap slices where they meet
    _set_acquisition_numbers(overlapping, [1, 1, 1, 2, 1, 2, 2, 2])
    np.testing.assert_array_equal(read_volume(tmp_path / "overlapping").array, np.asarray(ct.array))


def test_slices_of_a_series_in_a_transfer_syntax_the_reader_cannot_decode_are_named_as_such(tmp_path, ct):
    """Two slices of a series recompressed in JPEG XL (which GDCM cannot decode) were called 'cut short or damaged',
    with the advice to copy the series again, which brings the same files back; the message says what they are
    and how to decompress them."""
    files = write_ct_series(tmp_path / "partly_jxl", ct, shuffle_names=False)
    private, jpeg_xl = "1.2.826.0.1.3680043.9.1", "1.2.840.10008.1.2.4.110"  # as long as each other (see above)
    _retag([files[0], files[4]], TransferSyntaxUID=private)
    for name in (files[0], files[4]):
        name.write_bytes(name.read_bytes().replace(private.encode(), jpeg_xl.encode(), 1))
    with pytest.raises(InputError, match=r"cannot decode \(transfer syntax JPEG XL Lossless, 1\.2\.840\.10008\.1\.2\."
                                         r"4\.110, e\.g\. 'ct0000\.dcm'\)\. Decompress the files first .*"
                                         r"Without them \(2 file\(s\): "
                                         r"'ct0000\.dcm', 'ct0004\.dcm'\), DICOM series .* would be read with slices "
                                         r"missing\."):
        read_volume(tmp_path / "partly_jxl")


def test_a_colour_image_filed_among_the_slices_is_refused_not_read_as_a_slice(tmp_path, ct):
    """A screenshot (RGB) with a slice's size, position and series UID among the CT slices was turned into its
    grey luminance by ITK and read as a slice of 0 HU, without a word."""
    import pydicom

    files = write_ct_series(tmp_path / "with_rgb", ct, shuffle_names=False)
    ds = pydicom.dcmread(str(files[3]))
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.full((32, 32, 3), 200, np.uint8).tobytes()
    save_dicom(ds, files[3])
    with pytest.raises(InputError, match=r"1 of its 8 files \('ct0003.dcm'\) holds colour images \(RGB or another "
                                         r"colour photometric interpretation\) among its greyscale CT slices.*Remove "
                                         r"them, or export the axial series alone"):
        read_volume(tmp_path / "with_rgb")


def test_an_enhanced_ct_split_over_several_files_is_refused_naming_them(tmp_path, ct):
    """One enhanced CT series stored as two multi-frame files (4 frames each) was refused with 'the pixel spacing
    (PixelSpacing, 0028,0030) of file ... is missing ... Re-export the series', which named neither the
    multi-frame files nor a way to read them."""
    import pydicom

    folder = tmp_path / "split_enhanced"
    folder.mkdir()
    for part, first in enumerate((0, 4)):
        half = CTVolume(np.asarray(ct.array)[first:first + 4].copy(),
                        ImageGeometry(spacing=ct.geometry.spacing, origin=ct.geometry.index_to_lps((0.0, 0.0, first))))
        path = write_enhanced_ct(folder / f"part{part}.dcm", half, uid_seed=part)
        ds = pydicom.dcmread(str(path))  # one series, one frame of reference
        ds.SeriesInstanceUID, ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.71", "1.2.826.0.1.3680043.8.498.72"
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.73"
        save_dicom(ds, path)
    with pytest.raises(InputError, match=r"has 2 files, 2 of them multi-frame \(enhanced\) images \('part0.dcm' \(4 "
                                         r"frames\), 'part1.dcm' \(4 frames\)\).*Convert the series to NIfTI "
                                         r".*dcm2niix"):
        read_volume(folder)


def test_a_localizer_series_chosen_instead_of_the_ct_is_named_as_a_scout(tmp_path, ct):
    """A topogram series (AP and lateral scouts, two sizes) given or chosen instead of the axial CT was refused as
    'Its images have different sizes ...: a localizer/scout image ... is probably mixed in; remove the odd file(s)',
    advice that leaves a scout to segment; two of one size were told to remove 'that file' alike."""
    import pydicom

    scouts = write_ct_series(tmp_path / "study" / "scouts", ct, uid_seed=8, description="Topogram", series_number=1)
    for name in scouts[2:]:
        name.unlink()
    for index, name in enumerate(scouts[:2]):
        ds = pydicom.dcmread(str(name))
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "0", "-1"] if index == 0 else ["0", "1", "0", "0", "0", "-1"]
        if index == 1:  # the lateral scout is shorter
            ds.Rows = 24
            ds.PixelData = ds.PixelData[:24 * 32 * 2]
        save_dicom(ds, name)
    with pytest.raises(InputError, match=r"is a localizer \(scout\) series \(ImageType LOCALIZER, 2 image\(s\)\), not "
                                         r"an axial CT; give the folder of the axial CT series\.$"):
        read_volume(tmp_path / "study" / "scouts")
    write_ct_series(tmp_path / "study" / "axial", ct, uid_seed=9, description="Abdomen")
    with pytest.raises(InputError, match=r"is a localizer \(scout\) series .*not an axial CT; choose the axial CT "
                                         r"series with (--series|series=)"):
        read_volume(tmp_path / "study", series="Topogram")
    assert np.array_equal(read_volume(tmp_path / "study", series="Abdomen").array, np.asarray(ct.array))


def test_slices_without_an_orientation_are_refused_not_taken_as_axial(tmp_path, ct):
    """GDCM takes a missing ImageOrientationPatient as the identity: a series without it was read as axial, and a
    coronal series whose first file lacked it was read as axial (rows and slices swapped), both without a word."""
    import pydicom

    coronal = CTVolume(np.asarray(ct.array), ImageGeometry(spacing=ct.geometry.spacing, origin=ct.geometry.origin,
                                                           direction=(1, 0, 0, 0, 0, 1, 0, -1, 0)))
    files = write_ct_series(tmp_path / "coronal", coronal, shuffle_names=False)
    assert read_volume(tmp_path / "coronal").geometry.almost_equal(coronal.geometry)
    ds = pydicom.dcmread(str(files[0]))
    del ds.ImageOrientationPatient
    save_dicom(ds, files[0])
    with pytest.raises(InputError, match=r"1 of its 8 files \('ct0000.dcm'\) has no orientation "
                                         r"\(ImageOrientationPatient, 0020,0037\).*would take them as axial"):
        read_volume(tmp_path / "coronal")
    for name in files[1:]:
        ds = pydicom.dcmread(str(name))
        del ds.ImageOrientationPatient
        save_dicom(ds, name)
    with pytest.raises(InputError, match=r"its files \('ct0000.dcm', 'ct0001.dcm', 'ct0002.dcm' and 5 more\) have no "
                                         r"orientation .*Re-export the series from the scanner/PACS with its "
                                         r"orientation tags\.$"):
        read_volume(tmp_path / "coronal")


def test_an_unsigned_series_whose_first_slice_has_another_intercept_keeps_its_negative_hu(tmp_path, ct):
    """ITK takes the voxel type from the first file: an unsigned first slice with intercept 0 made the volume uint16,
    and the later slices, stored unsigned with intercept -1024, wrapped round (-500 HU read as 65036), no warning."""
    import pydicom

    hu = np.asarray(ct.array, dtype=np.int32).copy()
    hu[0] = np.abs(hu[0])  # the first slice, stored with intercept 0, holds no negative HU
    files = write_ct_series(tmp_path / "unsigned", ct, shuffle_names=False)
    for k, name in enumerate(files):
        ds = pydicom.dcmread(str(name))
        intercept = 0 if k == 0 else -1024
        ds.PixelRepresentation, ds.RescaleIntercept = 0, str(intercept)
        ds.PixelData = (hu[k] - intercept).astype(np.uint16).tobytes()
        save_dicom(ds, name)
    read = read_volume(tmp_path / "unsigned")
    assert read.array.dtype == np.int16
    np.testing.assert_array_equal(read.array, hu)


def test_two_acquisitions_at_the_same_positions_are_refused_naming_two_files_that_share_one(tmp_path, ct):
    """Two scans of the same slices in one series were refused as 'only 4 distinct slice position(s) ... mixes
    several acquisitions', naming no file, so the user could not tell which files belong together."""
    import pydicom

    files = write_ct_series(tmp_path / "two_scans", ct, shuffle_names=False)
    for k, name in enumerate(files):  # slices 4..7 repeat the positions of slices 0..3, as acquisition 2
        ds = pydicom.dcmread(str(name))
        ds.AcquisitionNumber = 1 + k // 4
        if k >= 4:
            ds.ImagePositionPatient = pydicom.dcmread(str(files[k - 4])).ImagePositionPatient
        save_dicom(ds, name)
    with pytest.raises(InputError, match=r"has 8 slices but only 4 distinct slice position\(s\) .*a repeated scan\) "
                                         r"\('ct0000.dcm' and 'ct0004.dcm' both lie at -100 mm along the slice normal; "
                                         r"acquisitions 1 and 2\)\. Export each acquisition as its own series\."):
        read_volume(tmp_path / "two_scans")


def test_series_chosen_by_a_superscript_digit_is_not_a_series_number(tmp_path):
    """--series ²: '²'.isdigit() is True and int('²') raised ValueError (an internal error); it is now matched as
    text and, matching nothing, refused with the series listed."""
    from LiverTumorSegLib.io.dicom import select_dicom_series

    folder = tmp_path / "dicom"
    write_ct_series(folder, make_phantom(shape_zyx=(4, 16, 16), seed=0).ct)
    with pytest.raises(InputError):
        select_dicom_series(find_dicom_series(folder), "\u00b2", folder)


# ---- a reader fuzz's reproductions: bits stored, rescale slope, transfer syntax UID ------------------------------
def test_a_slice_whose_values_do_not_fit_its_bits_stored_is_refused_and_one_whose_values_fit_is_read(tmp_path, ct):
    """One slice marked BitsStored 8 among 16-bit slices: GDCM kept 8 bits of each of its values, so it read
    -118..80 HU where it held -1000..710, exit 0. A slice marked 12 bits whose values fit (scanners mix 12 and 16)
    reads as it is."""
    files = write_ct_series(tmp_path / "damaged", ct, shuffle_names=False)
    _retag(files[4:5], BitsStored=8, HighBit=7)
    with pytest.raises(InputError, match=r"its files differ in BitsStored \(0028,0101\) \(16 in 7 file\(s\), 8 in 1 "
                                         r"file\(s\)\), and 1 of its 8 files \('ct0004.dcm'\) hold stored values that "
                                         r"do not fit their own BitsStored \(e.g. 'ct0004.dcm': -1000..710 in 8 bits, "
                                         r"which hold -128..127\).*re-export the series"):
        read_volume(tmp_path / "damaged")
    files = write_ct_series(tmp_path / "mixed", ct, shuffle_names=False)
    _retag(files[2:5], BitsStored=12, HighBit=11)  # -1000..716 fits 12 bits signed (-2048..2047)
    np.testing.assert_array_equal(read_volume(tmp_path / "mixed").array, np.asarray(ct.array))


@pytest.mark.parametrize("slope", ["1e-30", "0.0001", "5000"])
def test_a_rescale_slope_no_ct_uses_is_refused_not_read_as_about_zero_hu(tmp_path, ct, slope):
    """A RescaleSlope of 1e-30 in one file (a damaged header) passed (only 0, negative and non-finite slopes were
    refused): that slice read as about 0 HU, exit 0. So do an enhanced CT's functional groups."""
    files = write_ct_series(tmp_path / "series", ct)
    _retag(files[2:3], RescaleSlope=slope)
    with pytest.raises(InputError, match=rf"RescaleSlope \(0028,1053\) is {slope} in 1 of its 8 files \('ct0005.dcm'\), "
                                         rf"which no CT uses \(a CT's slope lies within 0.001..1000, usually 1\)"):
        read_volume(tmp_path / "series")

    def slope_odd(dataset):
        dataset.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0].RescaleSlope = slope

    _refused_from_file_and_folder(_edited_enhanced_ct(tmp_path, ct, slope_odd),
                                  rf"RescaleSlope \(0028,1053\) is {float(slope):g} in its frames' functional groups, "
                                  rf"which no CT uses")


def test_a_slope_at_the_edges_of_a_cts_range_is_read(tmp_path, ct):
    """1e-3 and 1e3 are inside the range; a slice's values follow its slope (stored x slope + intercept)."""
    files = write_ct_series(tmp_path / "series", ct, shuffle_names=False)
    _retag(files[1:2], RescaleSlope="0.001")
    _retag(files[2:3], RescaleSlope="1000")
    volume = read_volume(tmp_path / "series")
    stored = np.asarray(ct.array, dtype=np.float64)
    np.testing.assert_allclose(volume.array[1], stored[1] * 0.001, atol=1e-3)
    np.testing.assert_allclose(volume.array[2], stored[2] * 1000)
    np.testing.assert_array_equal(volume.array[3], stored[3])


def test_a_damaged_transfer_syntax_uid_is_named_as_damaged_not_as_a_newer_standard(tmp_path, ct):
    """'1.2.840.10008.q.2.1' (explicit VR little endian, 1.2.840.10008.1.2.1, with one character damaged) was
    described as 'a standard one newer than this reader' with advice to decompress the files."""
    files = write_ct_series(tmp_path / "damaged", ct)
    for name in files:  # the file meta's TransferSyntaxUID is the first occurrence
        name.write_bytes(name.read_bytes().replace(b"1.2.840.10008.1.2.1", b"1.2.840.10008.q.2.1", 1))
    for given in (tmp_path / "damaged", files[2], tmp_path):  # the folder, one file, the study folder above
        with pytest.raises(InputError, match=r"transfer syntax UID \(0002,0010\) is '1\.2\.840\.10008\.q\.2\.1'.*"
                                             r"which is not a valid UID \(a UID is numbers separated by dots\): the "
                                             r"files are damaged") as raised:
            read_volume(given)
        assert "newer than this reader" not in str(raised.value) and "Decompress" not in str(raised.value)


def _store_with_12_bits(files, signed: bool, intercept: int, edit) -> None:
    """Rewrite each file: stored = edit(HU) - ``intercept`` in 16 bits allocated, every file marked BitsStored 12."""
    import pydicom

    for f in files:
        ds = pydicom.dcmread(str(f))
        stored = edit(ds.pixel_array.astype(np.int32)) - intercept
        ds.PixelRepresentation = 1 if signed else 0
        ds.BitsStored, ds.HighBit = 12, 11
        ds.RescaleIntercept = f"{intercept}"
        ds.PixelData = stored.astype(np.int16 if signed else np.uint16).tobytes()
        save_dicom(ds, f, implicit_vr=False)


def _with_corner(value):
    def edit(hu):
        hu = hu.copy()
        hu[:3, :3] = value
        return hu
    return edit


@pytest.mark.parametrize("signed, intercept, value, shown",
                         [(True, 0, -3024, r"-3024..712, where 12 bits hold -2048..2047"),
                          (False, -1024, 3500, r"24..4524, where 12 bits hold 0..4095")],
                         ids=["signed-padding-minus3024", "unsigned-metal-3500hu"])
def test_a_series_whose_files_all_say_12_bits_but_hold_more_is_refused(tmp_path, ct, signed, intercept, value,
                                                                      shown):
    """Every file marked BitsStored 12 (HighBit 11) over 16-bit values: GDCM kept 12 bits of each, so padding stored
    as -3024 read +1072 HU and metal at 3500 HU (stored 4524, intercept -1024) read -596 HU, exit 0. The same series
    whose values fit 12 bits reads as it is."""
    files = write_ct_series(tmp_path / "damaged", ct, shuffle_names=False)
    _store_with_12_bits(files, signed, intercept, _with_corner(value))
    with pytest.raises(InputError, match=r"its files say BitsStored \(0028,0101\) is 12 \(of 16 allocated\), but they "
                                         r"hold stored values that 12 bits do not hold \(e.g. 'ct0000.dcm': "
                                         + shown + r"\).*set BitsStored to 16 and HighBit to 15"):
        read_volume(tmp_path / "damaged")
    files = write_ct_series(tmp_path / "fits", ct, shuffle_names=False)
    _store_with_12_bits(files, signed, intercept, _with_corner(-1000))
    expected = np.asarray(ct.array).copy()
    expected[:, :3, :3] = -1000
    np.testing.assert_array_equal(read_volume(tmp_path / "fits").array, expected)


@pytest.mark.parametrize("syntax", ["RLELossless", "JPEGLSLossless"])
def test_compressed_series_with_values_beyond_bits_stored_are_refused_like_uncompressed_ones(tmp_path, ct, syntax):
    """Compressed at 16 bits, then one slice's header marked BitsStored 8: GDCM read the RLE slice as -118..80 HU
    where it held -1000..710, exit 0 (pydicom's RLE decoder masked the bits above BitsStored too, so the check
    passed it). Every file marked 12 bits over padding stored as -3024: read as +1072 HU. Both refused now, as the
    uncompressed series are; a slice marked 12 bits whose values fit reads as it is."""
    import pydicom.uid

    uid = getattr(pydicom.uid, syntax)
    if syntax == "JPEGLSLossless":
        pytest.importorskip("jpeg_ls")  # pyjpegls: pydicom's JPEG-LS encoder and decoder

    def write(name, edit=None, retag=None):
        import pydicom

        files = write_ct_series(tmp_path / name, ct, shuffle_names=False)
        for k, f in enumerate(files):
            ds = pydicom.dcmread(str(f))
            if edit is not None:
                ds.PixelData = edit(ds.pixel_array.astype(np.int32)).astype(np.int16).tobytes()
            ds.compress(uid)
            if retag is not None and retag(k):
                ds.BitsStored, ds.HighBit = retag(k)
            save_dicom(ds, f)
        return tmp_path / name

    with pytest.raises(InputError, match=r"its files differ in BitsStored \(0028,0101\) \(16 in 7 file\(s\), 8 in 1 "
                                         r"file\(s\)\).*'ct0004.dcm': -1000..710 in 8 bits"):
        read_volume(write("one_8_bit", retag=lambda k: (8, 7) if k == 4 else None))
    with pytest.raises(InputError, match=r"its files say BitsStored \(0028,0101\) is 12 \(of 16 allocated\).*"
                                         r"'ct0000.dcm': -3024..712, where 12 bits hold -2048..2047"):
        read_volume(write("all_12_bit", edit=_with_corner(-3024), retag=lambda k: (12, 11)))
    fits = write("one_12_bit_fits", retag=lambda k: (12, 11) if k == 4 else None)
    np.testing.assert_array_equal(read_volume(fits).array, np.asarray(ct.array))


@pytest.fixture(scope="module")
def ct40():
    """A phantom CT of 40 slices of 64 x 64 in HU: more files than the 5 an earlier check sampled."""
    phantom = make_phantom(shape_zyx=(40, 64, 64), seed=5)
    geometry = ImageGeometry(spacing=(3.0, 3.0, 2.0), origin=(-96.0, -96.0, -40.0))
    return CTVolume(np.asarray(phantom.ct.array, dtype=np.int16), geometry)


@pytest.mark.parametrize("signed, intercept, value, where, shown",
                         [(True, 0, -3024, (5,), r"'ct0005.dcm': -3024..\d+, where 12 bits hold -2048..2047"),
                          (False, -1024, 3500, (36, 37), r"'ct0036.dcm': \d+..4524, where 12 bits hold 0..4095")],
                         ids=["signed-padding-one-slice", "unsigned-hip-metal-two-slices"])
def test_values_beyond_12_bits_in_files_outside_any_sample_are_refused(tmp_path, ct40, signed, intercept, value,
                                                                      where, shown):
    """Every file marked BitsStored 12, values beyond 12 bits only in 1-2 of 40 files, none of the 5 (0, 10, 20,
    29, 39) an earlier check sampled: metal at 3500 HU in two slices at the scan's bottom (a hip prosthesis) read
    as -596 HU, padding stored as -3024 in one slice as +1072 HU, exit 0. Every file is checked now."""
    files = write_ct_series(tmp_path / "damaged", ct40, shuffle_names=False)
    corner = _with_corner(value)
    for k, f in enumerate(files):
        _store_with_12_bits([f], signed, intercept, corner if k in where else (lambda hu: hu))
    with pytest.raises(InputError, match=r"its files say BitsStored \(0028,0101\) is 12 \(of 16 allocated\), but they "
                                         r"hold stored values that 12 bits do not hold \(e.g. " + shown
                                         + r"\).*set BitsStored to 16 and HighBit to 15"):
        read_volume(tmp_path / "damaged")
    fits = write_ct_series(tmp_path / "fits", ct40, shuffle_names=False)
    for k, f in enumerate(fits):
        _store_with_12_bits([f], signed, intercept, _with_corner(-1000) if k in where else (lambda hu: hu))
    expected = np.asarray(ct40.array).copy()
    expected[list(where), :3, :3] = -1000
    np.testing.assert_array_equal(read_volume(tmp_path / "fits").array, expected)


def test_every_file_check_reads_native_pixel_data_from_the_bytes_and_falls_back_to_pydicom(tmp_path, ct40):
    """The check of every file reads a native slice's values straight from its last bytes (explicit and implicit
    VR little endian alike, the values pydicom reads); a file whose PixelData is not the last element (a trailing
    DataSetTrailingPadding) or is compressed is left to pydicom, which still finds the metal in such a file."""
    import pydicom

    from LiverTumorSegLib.io.dicom import _native_pixel_values

    files = write_ct_series(tmp_path / "series", ct40, shuffle_names=False)
    _store_with_12_bits(files[:1], False, -1024, _with_corner(3500))
    ds = pydicom.dcmread(str(files[1]))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    save_dicom(ds, files[1], implicit_vr=True)
    for f in files[:2]:
        ds = pydicom.dcmread(str(f))
        values = _native_pixel_values(str(f), 64 * 64, 16, bool(ds.PixelRepresentation))
        assert values is not None
        np.testing.assert_array_equal(values, np.frombuffer(ds.PixelData, values.dtype))  # pixel_array masks
    assert int(_native_pixel_values(str(files[0]), 64 * 64, 16, False).max()) == 4524
    assert _native_pixel_values(str(files[0]), 64 * 64 - 1, 16, False) is None  # not the length the header gives
    ds = pydicom.dcmread(str(files[2]))
    ds.compress(pydicom.uid.RLELossless)
    save_dicom(ds, files[2])
    assert _native_pixel_values(str(files[2]), 64 * 64, 16, True) is None

    damaged = write_ct_series(tmp_path / "trailing", ct40, shuffle_names=False)
    for k, f in enumerate(damaged):
        _store_with_12_bits([f], False, -1024, _with_corner(3500) if k == 33 else (lambda hu: hu))
    ds = pydicom.dcmread(str(damaged[33]))
    ds.add_new(0xFFFCFFFC, "OB", b"\0\0")
    save_dicom(ds, damaged[33])
    assert _native_pixel_values(str(damaged[33]), 64 * 64, 16, False) is None
    with pytest.raises(InputError, match=r"is 12 \(of 16 allocated\).*'ct0033.dcm': \d+..4524, where 12 bits"):
        read_volume(tmp_path / "trailing")


@pytest.mark.parametrize("signed, intercept", [(True, 0), (False, -2048)], ids=["signed", "unsigned"])
def test_a_real_ct_stored_in_12_bits_that_fit_reads_exactly_as_stored(tmp_path, signed, intercept):
    """Testing/Data's real CT (30 slices, -1100..1207 HU) written as a series of 12 of 16 bits: every file is
    checked now, and the HU read are the CT's, voxel for voxel."""
    from LiverTumorSegLib.io.dicom import _spread_sample

    source = read_volume(Path(__file__).resolve().parents[2] / "Testing" / "Data" / "example_ct_sm.nii.gz")
    files = write_ct_series(tmp_path / "series", source, shuffle_names=False)
    assert len(files) > len(_spread_sample(files, 5))
    _store_with_12_bits(files, signed, intercept, lambda hu: hu)
    volume = read_volume(tmp_path / "series")
    np.testing.assert_array_equal(volume.array, np.asarray(source.array))
    np.testing.assert_allclose(volume.geometry.spacing, source.geometry.spacing, atol=1e-5)


def _with_embedded_overlay(files, bit: int, metal_slice: int = -1) -> None:
    """Rewrite each file as unsigned 12 of 16 bits (intercept -1024) with an overlay plane embedded at ``bit``
    (OverlayBitsAllocated 16, OverlayBitPosition ``bit``: the retired way older scanners stored overlays) set over a
    square; slice ``metal_slice`` also holds 3500 HU (stored 4524) in a corner."""
    import pydicom

    for k, f in enumerate(files):
        ds = pydicom.dcmread(str(f))
        stored = ds.pixel_array.astype(np.int32) + 1024
        if k == metal_slice:
            stored[:3, :3] = 3500 + 1024
        stored = stored.astype(np.uint16)
        stored[5:10, 5:10] |= np.uint16(1 << bit)
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit, ds.RescaleIntercept = 0, 12, 11, "-1024"
        ds.add_new(0x60000010, "US", ds.Rows)
        ds.add_new(0x60000011, "US", ds.Columns)
        ds.add_new(0x60000040, "CS", "G")
        ds.add_new(0x60000050, "SS", [1, 1])
        ds.add_new(0x60000100, "US", 16)
        ds.add_new(0x60000102, "US", bit)
        ds.PixelData = stored.tobytes()
        save_dicom(ds, f, implicit_vr=False)


def test_an_overlay_embedded_above_12_bits_is_not_taken_for_values_beyond_bits_stored(tmp_path, ct):
    """A series of 12 of 16 bits with an overlay plane embedded at bit 12 (retired in 2004, still in older
    archives): GDCM drops the overlay bit and reads the CT's HU exactly, but the every-file check took the
    overlay for values beyond BitsStored and refused the series (a CT that opened before no longer did). Values
    beyond 12 bits besides the overlay's bit (metal stored as 4524 under an overlay at bit 15) are still refused."""
    files = write_ct_series(tmp_path / "overlay", ct, shuffle_names=False)
    _with_embedded_overlay(files, 12)
    np.testing.assert_array_equal(read_volume(tmp_path / "overlay").array, np.asarray(ct.array))
    files = write_ct_series(tmp_path / "overlay_and_metal", ct, shuffle_names=False)
    _with_embedded_overlay(files, 15, metal_slice=3)
    with pytest.raises(InputError, match=r"is 12 \(of 16 allocated\).*'ct0003.dcm': \d+..\d+, where 12 bits hold "
                                         r"0..4095"):
        read_volume(tmp_path / "overlay_and_metal")


def test_one_file_of_a_series_without_series_uid_is_sent_to_its_folder_which_reads_it(tmp_path, ct):
    """A file without SeriesInstanceUID cannot name its series: the message says to give the folder, and the
    folder of such files is read as its one series, value for value on the written grid."""
    import pydicom

    files = write_ct_series(tmp_path / "ct", ct)
    for name in files:
        dataset = pydicom.dcmread(str(name))
        del dataset.SeriesInstanceUID
        dataset.save_as(str(name))
    with pytest.raises(InputError) as refused:
        read_volume(files[0])
    assert str(refused.value) == f"DICOM file '{files[0]}' has no SeriesInstanceUID; give its folder instead."
    volume = read_volume(tmp_path / "ct")
    assert volume.shape_zyx == ct.shape_zyx and volume.geometry.spacing == pytest.approx(ct.geometry.spacing)
    np.testing.assert_array_equal(volume.array, ct.array)


def _with_raw_ds_value(path: Path, element: int, value: str) -> None:
    """Rewrite the DS element (0020,``element``) of the explicit-VR little-endian DICOM file ``path`` as the bytes
    of ``value`` (padded to even length), which pydicom would refuse to write (``abc``, two or four values)."""
    import struct

    data = path.read_bytes()
    head = b"\x20\x00" + struct.pack("<H", element) + b"DS"
    at = data.index(head)
    old_length = struct.unpack("<H", data[at + 6:at + 8])[0]
    raw = value.encode("ascii") + (b" " if len(value) % 2 else b"")
    path.write_bytes(data[:at] + head + struct.pack("<H", len(raw)) + raw + data[at + 8 + old_length:])


def _with_raw_position(path: Path, value: str) -> None:
    """:func:`_with_raw_ds_value` of the ImagePositionPatient (0020,0032)."""
    _with_raw_ds_value(path, 0x0032, value)


@pytest.mark.parametrize("position", ["abc\\1\\2", "1\\2", "nan\\1\\2", "1e400\\1\\2", "1\\2\\3\\4", "1\\2\\3\\",
                                      "-48\\-60\\-94\\5"])
def test_a_slice_whose_position_is_not_three_numbers_is_named(tmp_path, ct, position):
    """An ImagePositionPatient that is not 3 finite numbers (x, y, z in mm) names its file and value. With four
    values the first three were taken: '1\\2\\3\\4' was refused as 'gantry-tilted' (advice: convert with dcm2niix)
    and '-48\\-60\\-94\\5' (the right position and a stray fourth value) was read without a word."""
    files = write_ct_series(tmp_path / "ct", ct)
    _with_raw_position(files[3], position)
    shown = re.escape(repr(position.rstrip()))
    with pytest.raises(InputError, match=f"has an invalid ImagePositionPatient \\({shown}\\) in file 'ct0004.dcm': "
                                         f"it must be 3 numbers \\(x, y, z in mm\\).*Re-export the series"):
        read_volume(tmp_path / "ct")


@pytest.mark.parametrize("index", [0, 3, 7])
def test_a_slice_with_an_empty_position_is_refused_with_nothing_else_on_stderr(tmp_path, ct, capfd, index):
    """An empty ImagePositionPatient (first, middle or last slice) is refused naming its file; an audit saw a
    maths error about a matrix holding NaN/inf printed from inside ITK beside it (not reproduced with this
    SimpleITK: a guard that the refusal stays the only word, at the file-descriptor level ITK writes to)."""
    files = write_ct_series(tmp_path / "ct", ct)
    _with_raw_position(files[index], "")
    capfd.readouterr()
    with pytest.raises(InputError, match=f"has an invalid ImagePositionPatient \\(''\\) in file "
                                         f"'{files[index].name}'"):
        read_volume(tmp_path / "ct")
    printed = capfd.readouterr()
    assert printed.err == "" and printed.out == ""


def _with_raw_orientation(path: Path, value: str) -> None:
    """:func:`_with_raw_ds_value` of the ImageOrientationPatient (0020,0037)."""
    _with_raw_ds_value(path, 0x0037, value)


@pytest.mark.parametrize("index", [0, 3])
def test_a_slice_with_an_empty_orientation_among_turned_slices_is_refused(tmp_path, ct, index):
    """Slices turned 20 degrees about z, one with an empty ImageOrientationPatient: only a missing tag counted as
    no orientation, and where the empty one was the first slice the series was read as axial (direction identity:
    the whole CT turned by 20 degrees in patient space), exit 0. It is named as a missing one is."""
    turn = np.deg2rad(20.0)
    rotation = np.array([[np.cos(turn), -np.sin(turn), 0.0], [np.sin(turn), np.cos(turn), 0.0], [0.0, 0.0, 1.0]])
    turned = CTVolume(ct.array, ImageGeometry(spacing=ct.geometry.spacing, origin=ct.geometry.origin,
                                              direction=tuple(rotation.ravel())))
    files = write_ct_series(tmp_path / "ct", turned)
    read = read_volume(tmp_path / "ct")
    assert np.allclose(np.asarray(read.geometry.direction).reshape(3, 3), rotation, atol=1e-5)  # as written
    _with_raw_orientation(files[index], "")
    with pytest.raises(InputError, match=f"1 of its 8 files \\('{files[index].name}'\\) has no orientation "
                                         f"\\(ImageOrientationPatient, 0020,0037\\).*would take them as axial"):
        read_volume(tmp_path / "ct")


def test_a_one_slice_series_with_an_empty_orientation_is_refused(tmp_path, ct):
    """One slice whose ImageOrientationPatient is empty was read as axial without a word (a missing one is
    refused)."""
    one = CTVolume(ct.array[:1], ct.geometry)
    files = write_ct_series(tmp_path / "ct", one)
    _with_raw_orientation(files[0], "")
    with pytest.raises(InputError, match=r"its files \('ct0000.dcm'\) have no orientation \(ImageOrientationPatient"):
        read_volume(tmp_path / "ct")


def test_one_slice_off_the_line_of_the_others_is_named_not_called_a_gantry_tilt(tmp_path, ct):
    """One file whose ImagePositionPatient lies 20 mm sideways of the other 7 slices' (a damaged header, or a
    slice of another series under this series' UID) was refused as 'gantry-tilted ... (a tilt of about 55
    degrees)' with the advice to convert the series with dcm2niix. A real tilt moves every slice a little."""
    files = write_ct_series(tmp_path / "ct", ct)
    _with_raw_position(files[3], "-28.000000\\-60.000000\\-94.000000")  # x -48 -> -28 mm, z on its slice
    with pytest.raises(InputError, match=r"file 'ct0004.dcm' has an ImagePositionPatient \(-28\\-60\\-94\) 20 mm "
                                         r"within the image plane from the other 7 slices' \(e.g. -48\\-60\\-100\).*"
                                         r"Remove that file if it does not belong") as refused:
        read_volume(tmp_path / "ct")
    assert "gantry" not in str(refused.value)


def test_running_out_of_memory_while_reading_a_dicom_header_is_said_not_called_no_dicom(tmp_path, monkeypatch):
    """A deflated DICOM is inflated whole by pydicom; three 7.8 MB files holding 7.5 GiB of private elements ran out
    of memory, and the broad excepts of the header reads took the MemoryError for 'not DICOM': 'Folder ... holds no
    DICOM series' (the file-safety audit). The memory failure is said now."""
    import pydicom

    from LiverTumorSegLib.errors import ResourceError
    from LiverTumorSegLib.io import dicom

    def out_of_memory(*args, **kwargs):
        raise MemoryError()

    import pydicom.filereader

    path = tmp_path / "x.dcm"
    path.write_bytes(bytes(200))
    monkeypatch.setattr(pydicom, "dcmread", out_of_memory)
    monkeypatch.setattr(pydicom.filereader, "read_partial", out_of_memory)
    for read in (dicom._series_and_image_key, dicom._file_rescale):
        with pytest.raises(ResourceError, match="memory"):
            read(str(path))


def test_an_enhanced_cts_padding_is_mapped_with_its_frames_rescale(tmp_path, ct):
    """An unsigned Enhanced CT keeps its rescale (intercept -1024) in the frames' functional groups, its
    PixelPaddingValue (63536) at the top level: the padding was mapped with the missing top-level rescale (1, 0), so
    the corners stayed +62512 HU and the CT was refused as 'shifted by +1024' (the DICOM audit). Read as the same
    pixels in single-frame files are: the corners -1024 HU, counted as padding."""
    import pydicom

    (tmp_path / "enhanced").mkdir()
    path = write_enhanced_ct(tmp_path / "enhanced" / "ct.dcm", ct)
    ds = pydicom.dcmread(str(path))
    stored = np.frombuffer(ds.PixelData, np.int16).reshape(ct.shape_zyx).astype(np.int32) + 1024
    stored[:, :6, :6] = 63536
    ds.PixelData = stored.astype(np.uint16).tobytes()
    ds.PixelRepresentation = 0
    ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0].RescaleIntercept = "-1024"
    ds.add_new(0x00280120, "US", 63536)  # PixelPaddingValue
    save_dicom(ds, path)
    volume = read_volume(path)
    assert (volume.array[:, :6, :6] == -1024).all() and volume.meta.get("padding_voxels") == 6 * 6 * ct.shape_zyx[0]
    np.testing.assert_array_equal(volume.array[:, 6:, 6:], ct.array[:, 6:, 6:])


@pytest.mark.parametrize("spacing_mm, noise", [((1.0, 1.0, 0.8), "jitter"), ((3.0, 3.0, 0.625), "two decimals")])
def test_an_enhanced_ct_whose_frame_positions_are_not_exactly_even_is_read(tmp_path, ct, spacing_mm, noise):
    """Frame positions a micrometre off an even grid (GDCM then falls back to 1 mm slices, which the spacing fix
    kept where the pixels were 1 mm) or written to 0.01 mm (the median step 0.63 for 0.625 put the last frame off by
    a slice and more) were refused as 'frames out of order, a missing frame or uneven spacing', while the same
    positions in single-frame files read (the DICOM audit). The slice spacing is the frames' mean step now."""
    import pydicom

    frames = 60 if noise == "two decimals" else ct.shape_zyx[0]
    array = np.resize(np.asarray(ct.array), (frames,) + tuple(ct.shape_zyx[1:])).astype(np.int16)
    volume = CTVolume(array, ImageGeometry(spacing=spacing_mm, origin=(-48.0, -60.0, -100.0)))
    (tmp_path / "enhanced").mkdir()
    path = write_enhanced_ct(tmp_path / "enhanced" / "ct.dcm", volume)
    ds = pydicom.dcmread(str(path))
    rng = np.random.default_rng(0)
    for k, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        z = -100.0 + k * spacing_mm[2]
        z = z + rng.uniform(-0.002, 0.002) if noise == "jitter" else round(z, 2)
        group.PlanePositionSequence[0].ImagePositionPatient = ["-48.000000", "-60.000000", f"{z:.6f}"]
    save_dicom(ds, path)
    read = read_volume(path)
    np.testing.assert_allclose(read.geometry.spacing, spacing_mm, atol=2e-3)
    assert read.shape_zyx == volume.shape_zyx


def test_an_enhanced_ct_whose_frames_are_turned_differently_is_refused(tmp_path, ct):
    """Frames with another ImageOrientationPatient (per-frame PlaneOrientationSequence) were all placed as the
    first frame, without a word, where a single-frame series with such files is refused (the DICOM audit)."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    (tmp_path / "enhanced").mkdir()
    path = write_enhanced_ct(tmp_path / "enhanced" / "ct.dcm", ct)
    ds = pydicom.dcmread(str(path))
    del ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence
    for k, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        turned = Dataset()
        turned.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"] if k < 4 else ["0", "1", "0", "-1", "0", "0"]
        group.PlaneOrientationSequence = Sequence([turned])
    save_dicom(ds, path)
    with pytest.raises(InputError, match=r"frame 5 has another orientation \(ImageOrientationPatient "
                                         r"0\\1\\0\\-1\\0\\0\) than frame 1"):
        read_volume(path)


def test_a_dicom_file_with_a_series_that_picks_another_series_is_refused(tmp_path, ct):
    """read_volume('P000.dcm', series='Arterial'), the file of another series of the folder, read the Arterial
    series without a word (the DICOM audit); a series that picks the file's own series still reads it."""
    portal = write_ct_series(tmp_path / "study", ct, uid_seed=1, description="Portal venous", series_number=1,
                             name_prefix="P")
    write_ct_series(tmp_path / "study", ct, uid_seed=2, description="Arterial", series_number=5, name_prefix="A")
    with pytest.raises(InputError, match=r"is a file of DICOM series .*, but --series 'Arterial' picks another "
                                         r"series of its folder \(.*'Arterial'\)"):
        read_volume(portal[0], series="Arterial")
    assert read_volume(portal[0], series="Portal venous").meta["series_description"] == "Portal venous"


@pytest.mark.parametrize("keyword, empty", [("RescaleIntercept", False), ("RescaleIntercept", True),
                                            ("RescaleSlope", False)])
def test_a_slice_without_the_rescale_the_others_give_is_refused_naming_it(tmp_path, ct, keyword, empty):
    """An unsigned series stored with intercept -1024 (and slope 0.5) whose one slice lacked RescaleIntercept (or
    held it empty), or RescaleSlope, read that slice 1024 HU too bright (or twice as bright), without a word (GDCM
    takes intercept 0 and slope 1); the file is named instead. Where the others give what GDCM takes (slope 1), a
    missing one changes nothing and the series is read (the review)."""
    import pydicom

    stored = CTVolume(((np.asarray(ct.array, dtype=np.int32) + 1024) * 2).astype(np.int16), ct.geometry)
    files = write_ct_series(tmp_path / "ct", stored)  # slice order
    _retag(files, RescaleIntercept="-1024", RescaleSlope="0.5", PixelRepresentation=0)
    intact = read_volume(tmp_path / "ct")
    np.testing.assert_array_equal(np.asarray(intact.array, dtype=np.float64), np.asarray(ct.array, np.float64))
    ds = pydicom.dcmread(str(files[4]))
    if empty:
        setattr(ds, keyword, "")
    else:
        delattr(ds, keyword)
    save_dicom(ds, files[4], implicit_vr=False)
    tag = "(0028,1052)" if keyword == "RescaleIntercept" else "(0028,1053)"
    with pytest.raises(InputError, match=re.escape(f"{keyword} {tag} is missing or empty in 1 of its 8 files "
                                                   f"('{files[4].name}'), while the others give it")):
        read_volume(tmp_path / "ct")
    plain = write_ct_series(tmp_path / "plain", ct, uid_seed=5)  # slope 1, intercept 0: what GDCM takes
    ds = pydicom.dcmread(str(plain[4]))
    delattr(ds, keyword)
    save_dicom(ds, plain[4], implicit_vr=False)
    np.testing.assert_array_equal(read_volume(tmp_path / "plain").array, ct.array)


def test_an_enhanced_ct_whose_one_frame_has_no_rescale_is_refused_naming_the_frame(tmp_path, ct):
    """Frames 2..n giving intercept -1024 per frame and frame 1 none: the reader applied no rescale to any frame
    (all 1024 HU too bright), which was read without a word, or refused as 'stored without its intercept'."""
    import pydicom

    path = write_enhanced_ct(tmp_path / "per_frame.dcm", ct, intercepts=[-1024.0] * ct.shape_zyx[0], uid_seed=4)
    np.testing.assert_array_equal(read_volume(path).array, ct.array)  # every frame with its rescale: read right
    ds = pydicom.dcmread(str(path))
    del ds.PerFrameFunctionalGroupsSequence[0].PixelValueTransformationSequence
    save_dicom(ds, path)
    with pytest.raises(InputError, match=re.escape("frame 1 of 8 gives no rescale (no PixelValueTransformationSequence"
                                                   " in the frame's or the shared functional groups) while the other "
                                                   "frames give one")):
        read_volume(path)


@pytest.mark.parametrize("name", ["study.zip", "Export.TAR.GZ", "series.7z"])
def test_an_archive_or_a_folder_of_archives_is_told_to_be_extracted(tmp_path, name):
    """A PACS export given as its zip was an 'Unknown file type' to give NIfTI, NRRD, MetaImage or a DICOM folder; a
    folder holding only the zip 'holds no DICOM series', without a word of the archive (the DICOM audit)."""
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / name).write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(InputError, match=re.escape(f"'{folder / name}' is an archive; this tool reads no archives: "
                                                   f"extract it")):
        read_volume(folder / name)
    with pytest.raises(InputError, match=re.escape(f"holds no DICOM series, nor do its subfolders (searched 6 levels "
                                                   f"deep). Give a folder of DICOM files, or a NIfTI (.nii, .nii.gz),"
                                                   f" NRRD (.nrrd, .nhdr) or MetaImage (.mha, .mhd) file. It holds 1 "
                                                   f"archive(s) ({name}), which this tool does not open: extract")):
        read_volume(folder)


def test_signed_values_in_a_series_marked_unsigned_are_refused_saying_what_to_mend(tmp_path, ct):
    """Two's complement values (air's -1000 as 64536) in files marked PixelRepresentation 0 were refused as 'CT
    stored without its rescale intercept', with --allow-non-hu offered, which would segment the wrapped values (the
    DICOM audit). An unsigned series stored with intercept -1024 still reads right."""
    import pydicom

    files = write_ct_series(tmp_path / "wrapped", ct)
    for path in files:
        ds = pydicom.dcmread(str(path))
        ds.PixelRepresentation = 0
        save_dicom(ds, path, implicit_vr=False)
    with pytest.raises(InputError, match=r"PixelRepresentation \(0028,0103\) is 0 \(unsigned\), but \d+ % of its "
                                         r"voxels read 32768 HU or more.*dcmodify -m \"\(0028,0103\)=1\""):
        read_volume(tmp_path / "wrapped")
    stored = CTVolume((np.asarray(ct.array, dtype=np.int32) + 1024).astype(np.int16), ct.geometry)
    files = write_ct_series(tmp_path / "unsigned", stored, uid_seed=2)
    _retag(files, RescaleIntercept="-1024", PixelRepresentation=0)
    np.testing.assert_array_equal(np.asarray(read_volume(tmp_path / "unsigned").array, np.float64),
                                  np.asarray(ct.array, np.float64))
    # unsigned with intercept -32768: every tissue at 0 HU or more is stored at 32768 or more, and reads right (the
    # first rule, on the stored values, refused it; the review)
    files = write_ct_series(tmp_path / "offset", ct, uid_seed=3)
    for k, path in enumerate(files):
        ds = pydicom.dcmread(str(path))
        ds.PixelRepresentation, ds.RescaleIntercept = 0, "-32768"
        ds.PixelData = (np.asarray(ct.array[k], dtype=np.int32) + 32768).astype("<u2").tobytes()
        save_dicom(ds, path, implicit_vr=False)
    np.testing.assert_array_equal(np.asarray(read_volume(tmp_path / "offset").array, np.float64),
                                  np.asarray(ct.array, np.float64))


def _minimal_ct_header(uid):
    """A CT image's header with file meta, no pixel data (explicit VR little endian), SOPInstanceUID ``uid``."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPInstanceUID = uid
    ds.Modality = "CT"
    return ds


def _save_with_file_meta(ds, path):
    """``ds.save_as`` as a DICOM file with its preamble and file meta, in pydicom 3 and 2.x alike."""
    try:
        ds.save_as(str(path), enforce_file_format=True)
    except TypeError:  # pydicom 2.x (Python 3.9): the older keyword
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(str(path), write_like_original=False)


def test_pydicoms_own_warnings_on_a_damaged_header_are_not_shown(tmp_path, caplog):
    """A header with an invalid UI value: pydicom logged and warned 'Invalid value for VR UI' for each file read,
    ten lines before the one-line error of a damaged series, and in a run that only peeked at a damaged sibling
    folder (the bad-inputs audit). dcmread_quietly reads it without them, on its thread only."""
    import logging
    import warnings

    import pydicom

    from LiverTumorSegLib.io.dicom import dcmread_quietly

    ds = _minimal_ct_header("1.2.3.4")
    path = tmp_path / "bad.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = pydicom.config.settings.writing_validation_mode
        pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
        try:
            ds.SeriesInstanceUID = "1.2.840.q.2"  # not a UID: letters
            _save_with_file_meta(ds, path)
        finally:
            pydicom.config.settings.writing_validation_mode = old
    caplog.clear()  # (writing the file said it)
    with caplog.at_level(logging.WARNING, logger="pydicom"), warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        read = dcmread_quietly(str(path), specific_tags=[0x0020000E])  # as the series scan reads it
        assert str(read.SeriesInstanceUID) == "1.2.840.q.2"
    assert not [r for r in caplog.records if r.name.startswith("pydicom")] and not shown
    # the series scan of the reader itself stays quiet on such files
    from LiverTumorSegLib.io.dicom import _series_and_image_key

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pydicom"), warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        _series_and_image_key(str(path))
    assert not [r for r in caplog.records if r.name.startswith("pydicom")] and not shown
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pydicom"), warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        str(pydicom.dcmread(str(path)).SeriesInstanceUID)  # pydicom's own read says it (the test's premise)
    if int(pydicom.__version__.split(".")[0]) >= 3:  # pydicom 2.x (Python 3.9) checks no UI value on reading
        assert [r for r in caplog.records if "Invalid value for VR UI" in r.getMessage()]


def test_a_damaged_value_no_check_reads_does_not_fail_the_files_quiet_read(tmp_path):
    """An FD element of 6 bytes (0018,9324), which no check reads: pydicom raises when that value is first read.
    dcmread_quietly read every value of a header first, and the file failed there (a pixel-size check skipped, an
    enhanced CT refused: the review); it reads only the values asked for, so the file reads and the damaged value
    raises only where it is read, as with pydicom's own dcmread."""
    import pydicom

    from LiverTumorSegLib.io.dicom import dcmread_quietly

    ds = _minimal_ct_header("1.2.3.5")
    ds.Rows = 4
    path = tmp_path / "bad_length.dcm"
    _save_with_file_meta(ds, path)
    data = path.read_bytes()
    element = (b"\x18\x00\x24\x93" + b"FD" + (6).to_bytes(2, "little") + bytes(6))  # (0018,9324) FD, 6 bytes
    path.write_bytes(data + element)  # after the last element (0028,0010): still in tag order
    with pytest.raises(Exception):
        pydicom.dcmread(str(path))[0x00189324].value  # the premise: pydicom raises on reading the value
    read = dcmread_quietly(str(path))
    assert int(read.Rows) == 4
    quiet = dcmread_quietly(str(path), specific_tags=[0x00280010, 0x00189324])  # asked for: left as it is
    assert int(quiet.Rows) == 4
