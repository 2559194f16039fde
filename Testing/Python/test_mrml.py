"""MRML glue (LiverTumorSegLib.mrml) against real MRML classes from slicer-core.

Known answers: voxel arrays written into nodes come back voxel-exact; geometry equals the node's IJKToRAS
(with parent transforms applied); segment names, colors and SNOMED CT tags are the ones Slicer stores.
"""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from LiverTumorSegLib import mrml
from LiverTumorSegLib.errors import InputError, LabelError, OutputExistsError
from LiverTumorSegLib.volume import ImageGeometry
from mrml_helpers import add_volume_node, add_warp_transform_node, read_volume_node

DATA = Path(__file__).resolve().parents[2] / "Testing" / "Data"

LIVER_TAG = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure"
             "~SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^")
TUMOR_TAG = ("Segmentation category and type - DICOM master list~SCT^49755003^Morphologically "
             "Altered Structure~SCT^108369006^Neoplasm~^^~Anatomic codes - DICOM master list~SCT^10200004^Liver~^^")


def test_terminology_tags_have_slicer_format_without_slicer():
    assert mrml.LIVER_SEGMENT.terminology_tag() == LIVER_TAG
    assert mrml.TUMOR_SEGMENT.terminology_tag() == TUMOR_TAG
    assert [s.label for s in mrml.SEGMENTS] == [1, 2]


def test_module_imports_without_slicer_or_vtk():
    code = ("import sys; import LiverTumorSegLib.mrml; "
            "print('slicer' in sys.modules, 'vtk' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def _vtk_stderr_verbosity(logger) -> int:
    """VTK's stderr verbosity, read as the cutoff while no other output (log file, callback) is open."""
    return int(logger.GetCurrentVerbosityCutoff())


@pytest.mark.parametrize("stderr_level,file_level,restored", [
    ("VERBOSITY_INFO", "VERBOSITY_MAX", "VERBOSITY_INFO"),  # stderr unreadable under the file's 9: VTK's default
    ("VERBOSITY_WARNING", "VERBOSITY_MAX", "VERBOSITY_INFO"),  # ... which is one step above this WARNING
    ("VERBOSITY_5", "VERBOSITY_ERROR", "VERBOSITY_5"),  # stderr above the file: read exactly
    ("VERBOSITY_WARNING", "VERBOSITY_ERROR", "VERBOSITY_WARNING"),
])
def test_vtk_stderr_verbosity_is_restored_not_raised_to_a_log_files(tmp_path, stderr_level, file_level, restored):
    """The block restored GetCurrentVerbosityCutoff(), the highest verbosity over all outputs: with a log file at
    VERBOSITY_MAX, stderr printed every VTK trace message after it."""
    vtk = pytest.importorskip("vtk")
    logger = vtk.vtkLogger
    start = _vtk_stderr_verbosity(logger)
    log_file = str(tmp_path / "vtk.log")
    try:
        logger.SetStderrVerbosity(getattr(logger, stderr_level))
        logger.LogToFile(log_file, logger.TRUNCATE, getattr(logger, file_level))
        with mrml._vtk_stderr_silenced():
            with mrml._vtk_stderr_silenced():  # nested: the inner exit leaves stderr off for the outer block
                pass
            assert int(logger.GetCurrentVerbosityCutoff()) == int(getattr(logger, file_level))  # the file alone
        logger.EndLogToFile(log_file)
        assert _vtk_stderr_verbosity(logger) == int(getattr(logger, restored))
    finally:
        logger.EndLogToFile(log_file)
        logger.SetStderrVerbosity(logger.ConvertToVerbosity(start))


def test_location_text_prefers_report_location():
    assert mrml.lesion_location_text({"location": "segment VII"}) == "segment VII"
    # where to go: the axial slice of the long axis (S, as on the slice slider); older reports: the centroid's S
    assert mrml.lesion_location_text({"axial_position_s_mm": 12.34, "centroid_ras_mm": [1, -2.25, 3]}) == \
        "axial S 12.3 mm"
    assert mrml.lesion_location_text({"centroid_ras_mm": [1, -2.25, 3]}) == "axial S 3.0 mm"
    assert mrml.lesion_location_text({"axial_position_s_mm": -40.0, "touches_scan_edge": True}) == \
        "axial S -40.0 mm, cut by scan edge"
    assert mrml.lesion_location_text({"axial_position_s_mm": -40.0, "cut_by_postprocessing": True}) == \
        "axial S -40.0 mm, cut by post-processing"
    # a lesion of water density (a simple cyst is possible) says so in the Slicer table, beside the other notes
    assert mrml.lesion_location_text({"axial_position_s_mm": -40.0, "touches_scan_edge": True,
                                      "water_density": True}) == \
        "axial S -40.0 mm, cut by scan edge, water density: cyst?"
    assert mrml.lesion_location_text({"axial_position_s_mm": -40.0, "water_density": False}) == "axial S -40.0 mm"
    # an older report without the field: the slice the views centre on (the long axis' middle), not the centroid
    older = {"centroid_ras_mm": [1, -2.25, 3],
             "long_axis": {"end_points_ras_mm": [[0.0, 0.0, 5.0], [10.0, 0.0, 5.0]]}}
    assert mrml.lesion_location_text(older) == "axial S 5.0 mm"
    assert mrml.lesion_location_text({"long_axis": {"length_mm": 5.0}}) == ""     # no end points, no centroid
    assert mrml.lesion_location_text({}) == ""


# ---- slicer-core tests --------------------------------------------------------------------------------

try:
    import slicer
    import vtk
except ImportError:  # slicer-core not installed: only the Slicer-free tests above run
    slicer = vtk = None

needs_slicer = pytest.mark.skipif(slicer is None, reason="needs slicer-core (pip install slicer-core)")


@pytest.fixture(scope="module")
def scene():
    return mrml.make_headless_scene()


def _oblique_geometry() -> ImageGeometry:
    a, b = 0.3, -0.2
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    flip = np.diag([1.0, -1.0, 1.0])  # a left-handed index frame too
    return ImageGeometry(spacing=(0.8, 0.9, 2.5), origin=(12.5, -20.0, 31.0),
                         direction=tuple((rz @ rx @ flip).ravel()))


def _add_volume_node(scene, array_zyx: np.ndarray, geometry: ImageGeometry, name="CT"):
    return add_volume_node(scene, array_zyx, geometry, name)


def _labels(shape=(7, 9, 11)) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    labels[1:6, 2:8, 1:10] = 1
    labels[2:4, 3:5, 2:5] = 2
    labels[5, 7, 9] = 2  # a one-voxel lesion at the liver's corner
    return labels


@needs_slicer
def test_oblique_ct_round_trip_volume_node_to_segmentation_is_voxel_exact(scene):
    geometry = _oblique_geometry()
    hu = np.random.default_rng(1).integers(-1000, 1500, size=(7, 9, 11)).astype(np.int16)
    node = _add_volume_node(scene, hu, geometry)

    volume = mrml.ctvolume_from_volume_node(node)
    assert volume.array.dtype == np.int16 and volume.array.shape == (7, 9, 11)
    np.testing.assert_array_equal(volume.array, hu)
    assert volume.geometry.almost_equal(geometry, tol=1e-9)
    assert volume.meta["mrml_node_id"] == node.GetID() and volume.source == "CT"
    volume.array[0, 0, 0] = 5  # a copy: the node's voxels are untouched
    assert mrml.ctvolume_from_volume_node(node).array[0, 0, 0] == hu[0, 0, 0]

    labels = _labels()
    seg = mrml.labels_to_segmentation_node(scene, labels, volume.geometry, reference_volume_node=node)
    back = mrml.segmentation_to_labels(seg, volume.geometry, labels.shape)
    np.testing.assert_array_equal(back, labels)
    assert seg.GetNodeReference(seg.GetReferenceImageGeometryReferenceRole()).GetID() == node.GetID()
    assert mrml.segment_mask(seg, "livertumorseg_tumor", volume.geometry, labels.shape).sum() == (labels == 2).sum()


@needs_slicer
def test_nifti_read_by_storage_node_matches_nibabel(scene):
    nib = pytest.importorskip("nibabel")
    path = DATA / "example_ct_sm.nii.gz"
    node = read_volume_node(scene, path, "example", keep_storage=False)
    volume = mrml.ctvolume_from_volume_node(node)
    img = nib.load(str(path))
    np.testing.assert_array_equal(volume.array, np.asarray(img.dataobj).transpose(2, 1, 0))
    np.testing.assert_allclose(volume.geometry.ijk_to_ras(), img.affine, atol=1e-4)


@needs_slicer
def test_linear_parent_transform_is_applied_to_geometry(scene):
    geometry = _oblique_geometry()
    node = _add_volume_node(scene, np.zeros((3, 4, 5), np.int16), geometry, name="moved")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    to_parent = np.eye(4)
    c, s = np.cos(0.5), np.sin(0.5)
    to_parent[:3, :3] = [[1, 0, 0], [0, c, -s], [0, s, c]]
    to_parent[:3, 3] = [5.0, -7.0, 11.0]
    transform.SetMatrixTransformToParent(mrml._numpy_to_matrix(to_parent))
    node.SetAndObserveTransformNodeID(transform.GetID())
    volume = mrml.ctvolume_from_volume_node(node)
    np.testing.assert_allclose(volume.geometry.ijk_to_ras(), to_parent @ geometry.ijk_to_ras(), atol=1e-9)


@needs_slicer
def test_nonlinear_and_shearing_transforms_are_refused(scene):
    node = _add_volume_node(scene, np.zeros((3, 4, 5), np.int16), _oblique_geometry(), name="warped")
    warp = add_warp_transform_node(scene, "warp", moved_point=((30, 30, 30), (33, 30, 30)))
    node.SetAndObserveTransformNodeID(warp.GetID())
    with pytest.raises(InputError, match="non-linear transform 'warp'.*Harden"):
        mrml.ctvolume_from_volume_node(node)
    # under a linear transform that lies under the warp: the warp is named (the linear one was, to be hardened in vain)
    between = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "between")
    between.SetAndObserveTransformNodeID(warp.GetID())
    node.SetAndObserveTransformNodeID(between.GetID())
    with pytest.raises(InputError, match="non-linear transform 'warp'.*Harden"):
        mrml.ctvolume_from_volume_node(node)
    node.SetAndObserveTransformNodeID(warp.GetID())

    shear = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shear")
    m = np.eye(4)
    m[0, 1] = 0.5
    shear.SetMatrixTransformToParent(mrml._numpy_to_matrix(m))
    node.SetAndObserveTransformNodeID(shear.GetID())
    with pytest.raises(InputError, match="sheared by its parent transform"):
        mrml.ctvolume_from_volume_node(node)


@needs_slicer
def test_a_volume_sheared_by_its_own_grid_is_refused_without_blaming_a_transform(scene):
    """A gantry-tilted CT kept on its sheared grid (IJK-to-RAS columns not perpendicular, no transform anywhere) was
    refused as 'sheared by its parent transform', which sent the user looking for a transform that is not there."""
    node = _add_volume_node(scene, np.zeros((3, 4, 5), np.int16), ImageGeometry(spacing=(1.0, 1.0, 1.0)),
                            name="tilted")
    tilted = np.eye(4)
    tilted[1, 2] = 0.3  # each slice 0.3 mm further anterior: a 16.7 degree gantry tilt
    node.SetIJKToRASMatrix(mrml._numpy_to_matrix(tilted))
    for read in (mrml.ctvolume_from_volume_node, mrml.world_ijk_to_ras):
        with pytest.raises(InputError, match="'tilted' has a sheared grid: its voxel axes are up to 16.7 degrees off "
                                             "a right angle.*Resample it onto a regular grid") as raised:
            read(node)
        assert "transform" not in str(raised.value).split("Resample")[0]


@needs_slicer
def test_segments_edited_since_the_run_are_named_also_after_the_scene_was_saved_and_loaded(tmp_path):
    """A reader corrects the tumor in Segment Editor and then clicks Segment again: the question only said "Replace
    them?". The node records its segments' voxels as the run wrote them, so the panel can name the edited ones; saved
    and loaded (a .seg.nrrd that merges the layers, and the scene file), an unedited result is not called edited."""
    scene = mrml.make_headless_scene()
    geometry = _oblique_geometry()
    labels = _labels()
    seg = mrml.labels_to_segmentation_node(scene, labels, geometry, name="Result")
    seg.GetSegmentation().AddEmptySegment("mine", "Spleen")
    assert mrml.segments_edited_since_result(seg) == []
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(tmp_path / "Result.seg.nrrd"))
    assert storage.WriteData(seg)
    seg.SetAndObserveStorageNodeID(storage.GetID())
    scene.SetURL(str(tmp_path / "scene.mrml"))
    assert scene.Commit()
    loaded = mrml.make_headless_scene()
    loaded.SetURL(str(tmp_path / "scene.mrml"))
    loaded.Import()
    reloaded = loaded.GetFirstNodeByClass("vtkMRMLSegmentationNode")
    assert reloaded.GetSegmentation().GetNumberOfLayers() == 1  # the storage node merged them
    assert mrml.segments_edited_since_result(reloaded) == []
    painted = (labels == 2).astype(np.uint8)
    painted[0, 0, 0:2] = 1  # the tumor with two voxels added, set as Segment Editor's effects end (in a shared layer)
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    logic.SetBinaryLabelmapToSegment(mrml.oriented_image_from_array(painted, geometry), reloaded,
                                     mrml.TUMOR_SEGMENT.segment_id, logic.MODE_REPLACE)
    assert mrml.segment_mask(reloaded, mrml.TUMOR_SEGMENT.segment_id, geometry, labels.shape).sum() == painted.sum()
    assert mrml.segments_edited_since_result(reloaded) == ["Liver tumor"]
    reloaded.GetSegmentation().GetSegment(mrml.TUMOR_SEGMENT.segment_id).SetName("Metastasis 4")
    logic.SetBinaryLabelmapToSegment(mrml.oriented_image_from_array(painted, geometry), reloaded, "mine",
                                     logic.MODE_REPLACE)  # another segment drawn: no edit of ours
    assert mrml.segments_edited_since_result(reloaded) == ["Metastasis 4"]
    mrml.labels_to_segmentation_node(loaded, labels, geometry, segmentation_node=reloaded)  # a run replaces them
    assert mrml.segments_edited_since_result(reloaded) == []
    reloaded.GetSegmentation().RemoveSegment(mrml.LIVER_SEGMENT.segment_id)  # deleted: nothing to lose
    assert mrml.segments_edited_since_result(reloaded) == []
    assert mrml.segments_edited_since_result(scene.AddNewNodeByClass("vtkMRMLSegmentationNode")) == []  # no record
    assert mrml.segments_edited_since_result(None) == []


def _liver_cube_and_half_voxel_grid():
    """A 1 mm identity CT grid, labels ``(z, y, x)`` with a liver cube holding a tumor cube, and the 4 x 4 ijk-to-RAS
    matrix of Segment Editor's 2x oversampling of that grid (0.5 mm voxels, origin a quarter voxel back)."""
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[3:17, 3:17, 3:17] = 1
    labels[8:11, 8:11, 8:11] = 2
    fine = np.diag([0.5, 0.5, 0.5, 1.0])
    fine[:3, 3] = -0.25
    return ImageGeometry.from_ijk_to_ras(np.eye(4)), labels, fine


@needs_slicer
def test_a_save_onto_a_users_finer_grid_is_no_edit_but_an_edit_after_it_is(tmp_path):
    """Saved as .seg.nrrd, a segmentation holding a user's segment drawn with 2x oversampling has every layer moved
    onto that finer grid (in memory too): the replace question then called the untouched tumor "edited". The record
    keeps the grid the run wrote on, and whole-number oversampling maps back voxel for voxel; a real edit still
    counts."""
    scene = mrml.make_headless_scene()
    ct_geometry, labels, fine = _liver_cube_and_half_voxel_grid()
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "My work")
    nodule = np.zeros((40, 40, 40), np.uint8)
    nodule[5:9, 5:9, 5:9] = 1
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    seg.GetSegmentation().AddEmptySegment("nodule", "nodule", [1, 0, 0])
    logic.SetBinaryLabelmapToSegment(mrml.oriented_image_from_array(nodule, ImageGeometry.from_ijk_to_ras(fine)), seg,
                                     "nodule", logic.MODE_REPLACE)
    mrml.labels_to_segmentation_node(scene, labels, ct_geometry, segmentation_node=seg)
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(tmp_path / "fine.seg.nrrd"))
    assert storage.WriteData(seg)
    moved = mrml.segment_grid(seg, mrml.TUMOR_SEGMENT.segment_id)
    assert np.allclose(moved[:3, :3], np.eye(3) * 0.5)  # the tumor now lies on the finer grid
    assert mrml.segments_edited_since_result(seg) == []
    tumor = (labels == 2).astype(np.uint8)
    tumor[12, 12, 12] = 1  # one CT voxel more
    logic.SetBinaryLabelmapToSegment(mrml.oriented_image_from_array(tumor, ct_geometry), seg,
                                     mrml.TUMOR_SEGMENT.segment_id, logic.MODE_REPLACE)
    assert mrml.segments_edited_since_result(seg) == ["Liver tumor"]


@needs_slicer
@pytest.mark.parametrize("edit", ["trim", "grow", "dot"])
def test_an_edit_of_part_of_a_voxel_on_a_finer_grid_is_an_edit(edit):
    """Segment Editor with oversampling 2 moves the segment onto a 2x grid; the record, taken on the CT's grid, read
    one sub-voxel per CT voxel, so erasing or drawing the other seven went unseen (a tumor trimmed by 0.5 mm read as
    not edited, and the next run replaced it without a word). A move onto the finer grid alone is still no edit."""
    scene = mrml.make_headless_scene()
    ct_geometry, labels, fine = _liver_cube_and_half_voxel_grid()
    seg = mrml.labels_to_segmentation_node(scene, labels, ct_geometry)
    tumor = np.zeros((40, 40, 40), np.uint8)
    tumor[16:22, 16:22, 16:22] = 1  # the 3 x 3 x 3 voxel tumor, each voxel as 2 x 2 x 2 on the finer grid
    segment = seg.GetSegmentation().GetSegment(mrml.TUMOR_SEGMENT.segment_id)

    def put(mask):
        segment.AddRepresentation(mrml._labelmap_name(),
                                  mrml.oriented_image_from_array(mask, ImageGeometry.from_ijk_to_ras(fine)))

    put(tumor)
    assert mrml.segments_edited_since_result(seg) == []
    edited = tumor.copy()
    if edit == "trim":
        edited[16:22, 16:22, 21] = 0  # 0.5 mm off one face
    elif edit == "grow":
        edited[16:22, 16:22, 15] = 1  # 0.5 mm onto the other
    else:
        edited[2, 2, 2] = 1  # one sub-voxel far away
    put(edited)
    assert mrml.segments_edited_since_result(seg) == ["Liver tumor"]


@needs_slicer
@pytest.mark.parametrize("record", ["[1]", "null", "5", '"text"', "{bad", '{"livertumorseg_liver": 5}',
                                    "[" * 5000 + "]" * 5000])
def test_a_result_record_edited_by_hand_into_no_json_object_reads_as_no_record(scene, record):
    """The record of the run's voxels lies in the scene file: edited into a JSON list, number or null (or nested
    thousands deep), the Segment button's question raised AttributeError ('list' object has no attribute 'items',
    or RecursionError) and the click did nothing; such a record now reads as none, as unreadable JSON did."""
    seg = mrml.labels_to_segmentation_node(scene, _labels(), _oblique_geometry(), name="Edited record")
    seg.SetAttribute(mrml.RESULT_VOXELS_ATTRIBUTE, record)
    assert mrml.segments_edited_since_result(seg) == []
    scene.RemoveNode(seg)


@needs_slicer
@pytest.mark.parametrize("edit", ["singular", "nan", "voxels 1e-4 as large", "origin 1e300 mm"])
def test_a_result_record_whose_grid_was_edited_by_hand_reads_as_no_record(scene, edit):
    """The record's grid (16 numbers a segment) lies in the scene file too: edited into no finite invertible 4x4, or
    one whose voxels are 10,000 times smaller (382 TiB to move the segment onto) or lie 1e300 mm away, the Segment
    button's question raised LinAlgError, InputError, MemoryError or OverflowError and the click did nothing; such a
    record now reads as none, as a record that is no JSON object does (and, 1e300 mm away, without numpy's 'invalid
    value encountered in cast' warning on the way)."""
    import json
    import warnings

    seg = mrml.labels_to_segmentation_node(scene, _labels(), _oblique_geometry(), name="Edited grid")
    record = json.loads(seg.GetAttribute(mrml.RESULT_VOXELS_ATTRIBUTE))
    segment_id = sorted(record)[0]
    grid = np.asarray(record[segment_id][1], dtype=float).reshape(4, 4)
    if edit == "singular":
        grid[:] = 0.0
    elif edit == "nan":
        grid[0, 0] = float("nan")
    elif edit.startswith("voxels"):
        grid[:3, :3] *= 1e-4
    else:
        grid[:3, 3] = 1e300
    record[segment_id][1] = [float(v) for v in grid.ravel()]
    seg.SetAttribute(mrml.RESULT_VOXELS_ATTRIBUTE, json.dumps(record))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert mrml.segments_edited_since_result(seg) == []
    scene.RemoveNode(seg)


@needs_slicer
def test_empty_and_vector_volumes_are_refused(scene):
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputError, match="no image data"):
        mrml.ctvolume_from_volume_node(empty)
    with pytest.raises(InputError, match="No input volume"):
        mrml.ctvolume_from_volume_node(None)
    rgb = _add_volume_node(scene, np.zeros((2, 3, 4), np.uint8), _oblique_geometry(), name="rgb")
    image = vtk.vtkImageData()
    image.SetDimensions(4, 3, 2)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 3)
    rgb.SetAndObserveImageData(image)
    with pytest.raises(InputError, match="3 components"):
        mrml.ctvolume_from_volume_node(rgb)


@needs_slicer
def test_segment_names_colors_and_terminology(scene):
    seg = mrml.labels_to_segmentation_node(scene, _labels(), _oblique_geometry(), name="Result")
    segmentation = seg.GetSegmentation()
    assert seg.GetName() == "Result" and seg.GetDisplayNode() is not None
    assert list(segmentation.GetSegmentIDs()) == ["livertumorseg_liver", "livertumorseg_tumor"]
    liver = segmentation.GetSegment("livertumorseg_liver")
    tumor = segmentation.GetSegment("livertumorseg_tumor")
    assert liver.GetName() == "Liver" and tumor.GetName() == "Liver tumor"
    np.testing.assert_allclose(liver.GetColor(), np.array([221, 130, 101]) / 255)
    np.testing.assert_allclose(tumor.GetColor(), np.array([144, 238, 144]) / 255)
    assert mrml.segment_terminology_tag(liver) == LIVER_TAG
    assert mrml.segment_terminology_tag(tumor) == TUMOR_TAG


@needs_slicer
def test_a_result_written_into_a_segmentation_without_a_display_node_gets_one(scene):
    """A segmentation node a script made (AddNewNodeByClass makes no display node) got the result and was never shown:
    the panel's showResult does nothing without a display node. An existing display node is kept as it is."""
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "made by a script")
    assert seg.GetDisplayNode() is None
    mrml.labels_to_segmentation_node(scene, _labels(), _oblique_geometry(), segmentation_node=seg)
    display = seg.GetDisplayNode()
    assert display is not None
    display.SetOpacity(0.3)  # the user's setting
    mrml.labels_to_segmentation_node(scene, _labels(), _oblique_geometry(), segmentation_node=seg)
    assert seg.GetDisplayNode() is display and display.GetOpacity() == pytest.approx(0.3)


@needs_slicer
def test_rerun_replaces_only_our_segments(scene):
    geometry = _oblique_geometry()
    labels = _labels()
    seg = mrml.labels_to_segmentation_node(scene, labels, geometry)
    user_mask = np.zeros(labels.shape, np.uint8)
    user_mask[0, 0:2, 0:2] = 1
    segmentation = seg.GetSegmentation()
    segmentation.AddEmptySegment("user", "My notes", [0, 0, 1])
    slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        mrml.oriented_image_from_array(user_mask, geometry), seg, "user",
        slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    assert mrml.existing_output_segment_ids(seg) == ["livertumorseg_liver", "livertumorseg_tumor"]

    with pytest.raises(OutputExistsError, match="already has the segments"):
        mrml.labels_to_segmentation_node(scene, labels, geometry, segmentation_node=seg, replace_existing=False)

    second = np.zeros_like(labels)
    second[3:5, 4:6, 5:8] = 1
    same = mrml.labels_to_segmentation_node(scene, second, geometry, segmentation_node=seg)
    assert same is seg and segmentation.GetNumberOfSegments() == 3
    np.testing.assert_array_equal(mrml.segmentation_to_labels(seg, geometry, labels.shape), second)
    np.testing.assert_array_equal(mrml.segment_mask(seg, "user", geometry, labels.shape), user_mask)
    assert segmentation.GetSegment("user").GetName() == "My notes"


def _add_segment(seg, segment_id, name, mask, geometry):
    seg.GetSegmentation().AddEmptySegment(segment_id, name, [0, 0, 1])
    slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        mrml.oriented_image_from_array(mask, geometry), seg, segment_id,
        slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)


@needs_slicer
def test_a_rerun_removes_the_pieces_segment_editor_split_off_the_earlier_tumor(scene):
    """Islands' "Split islands to segments" on our "Liver tumor" leaves the first island in it and puts the others
    in "Liver tumor_2", "Liver tumor_3" (Slicer's naming). A re-run replaced "Liver tumor" and kept the pieces, so
    the new result's lesion table left them out while "Update lesion table" counted them (tumor by name) beside the
    new tumor: an old lesion the new run did not find came back."""
    geometry = _oblique_geometry()
    labels = _labels()
    seg = mrml.labels_to_segmentation_node(scene, labels, geometry)
    old_piece = np.zeros(labels.shape, np.uint8)
    old_piece[5, 6:8, 7:9] = 1  # inside the liver, not tumor in the new result
    notes = np.zeros(labels.shape, np.uint8)
    notes[0, 0:2, 0:2] = 1
    for segment_id, name, mask in [("piece2", "Liver tumor_2", old_piece), ("piece3", "liver tumor -_3", old_piece),
                                   ("notes", "Liver tumor notes", notes), ("meta", "Metastasis_2", notes),
                                   ("liver2", "Liver_2", notes)]:
        _add_segment(seg, segment_id, name, mask, geometry)
    assert mrml.split_off_segments(seg) == {"piece2": "Liver tumor_2", "piece3": "liver tumor -_3",
                                            "liver2": "Liver_2"}
    before = mrml.segmentation_to_labels(seg, geometry, labels.shape)
    # the pieces are counted as tumor (as are "Liver tumor notes" and "Metastasis_2", which are no pieces)
    assert (before == 2).sum() == ((labels == 2) | (old_piece > 0) | (notes > 0)).sum() == (labels == 2).sum() + 8

    with pytest.raises(OutputExistsError, match="piece2"):
        mrml.labels_to_segmentation_node(scene, labels, geometry, segmentation_node=seg, replace_existing=False,
                                         remove_segment_ids=["piece2"])
    with pytest.raises(OutputExistsError):  # pieces alone (ours deleted) are refused too
        alone = mrml.labels_to_segmentation_node(scene, labels, geometry)
        _add_segment(alone, "p", "Liver tumor_2", old_piece, geometry)
        for spec in mrml.SEGMENTS:
            alone.GetSegmentation().RemoveSegment(spec.segment_id)
        mrml.labels_to_segmentation_node(scene, labels, geometry, segmentation_node=alone, replace_existing=False,
                                         remove_segment_ids=["p"])

    mrml.labels_to_segmentation_node(scene, labels, geometry, segmentation_node=seg,
                                     remove_segment_ids=list(mrml.split_off_segments(seg)) + ["gone"])
    segmentation = seg.GetSegmentation()
    remaining = sorted(segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments()))
    assert remaining == ["livertumorseg_liver", "livertumorseg_tumor", "meta", "notes"]
    after = mrml.segmentation_to_labels(seg, geometry, labels.shape)
    assert after[5, 6:8, 7:9].tolist() == [[1, 1], [1, 1]]  # the old piece is liver again, as the new result says
    np.testing.assert_array_equal(mrml.segment_mask(seg, "notes", geometry, labels.shape), notes)


@needs_slicer
def test_a_segment_named_by_default_counts_by_its_terminology_as_in_the_saved_file(scene):
    """A segment the reader added as 'Segment_1' and gave the terminology Neoplasm in the liver counts as tumor in
    the panel, as measure reads the saved .seg.nrrd (where the name says nothing, the terminology decides)."""
    geometry = _oblique_geometry()
    labels = _labels()
    seg = mrml.labels_to_segmentation_node(scene, labels, geometry)
    extra = np.zeros(labels.shape, np.uint8)
    extra[5, 6:8, 7:9] = 1
    _add_segment(seg, "Segment_1", "Segment_1", extra, geometry)
    segment = seg.GetSegmentation().GetSegment("Segment_1")
    neoplasm = mrml.SEGMENTS[1].terminology_tag()
    assert mrml.parse_terminology_tag(neoplasm)["type"][1] == "108369006"
    segment.SetTag(segment.GetTerminologyEntryTagName(), neoplasm)
    assert (mrml.segmentation_to_labels(seg, geometry, labels.shape)[5, 6:8, 7:9] == 2).all()
    segment.SetName("Cyst")  # a name the reader gave decides
    assert (mrml.segmentation_to_labels(seg, geometry, labels.shape)[5, 6:8, 7:9] == labels[5, 6:8, 7:9]).all()


@needs_slicer
def test_only_names_segment_editor_gives_split_off_pieces_count_as_pieces(scene):
    """The Islands effect names the pieces it splits off "Liver tumor" from "_2" on (the first island stays in the
    segment): a user's "Liver tumor_1" (a first lesion), "Liver_0" or "Liver tumor_02" was taken for a piece too and
    deleted by a re-run, once OK was clicked on a question that called it a piece split off the result."""
    geometry = _oblique_geometry()
    labels = _labels()
    seg = mrml.labels_to_segmentation_node(scene, labels, geometry)
    mask = np.zeros(labels.shape, np.uint8)
    mask[0, 0:2, 0:2] = 1
    names = {"a": "Liver tumor_1", "b": "Liver_0", "c": "Liver tumor_02", "d": "Liver tumor_2", "e": "Liver_10",
             "f": "Liver tumor_1_2", "g": "LIVER TUMOR_3", "h": "Liver tumor -_1"}
    for segment_id, name in names.items():
        _add_segment(seg, segment_id, name, mask, geometry)
    assert mrml.split_off_segments(seg) == {"d": "Liver tumor_2", "e": "Liver_10", "g": "LIVER TUMOR_3",
                                            "h": "Liver tumor -_1"}


def _native_segment_voxels(seg, segment_id):
    """(spacing, voxel count) of a segment's own stored labelmap, without any resampling."""
    from vtk.util import numpy_support
    image = slicer.vtkOrientedImageData()
    slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(seg, segment_id, image)
    value = seg.GetSegmentation().GetSegment(segment_id).GetLabelValue()
    return tuple(image.GetSpacing()), int((numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()) == value).sum())


@needs_slicer
def test_user_segments_on_a_finer_grid_are_left_voxel_for_voxel(scene, tmp_path):
    """The user's segments, drawn with Segment Editor's oversampling (0.5 mm on a 1 mm CT) and overlapping the
    liver, must survive writing our segments into their segmentation: written into their shared labelmap layer,
    Slicer resampled the layer onto the CT grid and erased the small ones."""
    ct_geometry, labels, fine = _liver_cube_and_half_voxel_grid()
    fine_geometry = ImageGeometry.from_ijk_to_ras(fine)
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "My work")
    seg.CreateDefaultDisplayNodes()
    zz, yy, xx = np.mgrid[0:40, 0:40, 0:40] * 0.5
    before = {}
    for sid, centre, radius in (("vessel", (10, 10, 5), 0.7), ("nodule", (12, 12, 12), 1.2),
                                ("outside", (18.5, 18.5, 18.5), 1.0)):
        mask = (((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2) <= radius ** 2)
        seg.GetSegmentation().AddEmptySegment(sid, sid, [1, 0, 0])
        slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            mrml.oriented_image_from_array(mask.astype(np.uint8), fine_geometry), seg, sid,
            slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
        before[sid] = _native_segment_voxels(seg, sid)
        assert before[sid][0] == (0.5, 0.5, 0.5) and before[sid][1] > 0
    for _ in range(2):  # a first run and a re-run
        mrml.labels_to_segmentation_node(scene, labels, ct_geometry, segmentation_node=seg)
        assert {sid: _native_segment_voxels(seg, sid) for sid in before} == before
        np.testing.assert_array_equal(mrml.segmentation_to_labels(seg, ct_geometry, labels.shape), labels)
    assert list(seg.GetSegmentation().GetSegmentIDs()) == ["vessel", "nodule", "outside", "livertumorseg_liver",
                                                            "livertumorseg_tumor"]
    # Saved as .seg.nrrd, Slicer's storage node puts every layer on one grid (it also merges the layers of the
    # node in memory): ours go onto the user's finer grid, which for Segment Editor's whole-number oversampling
    # keeps their voxels exactly, and the user's segments stay voxel for voxel through the file
    masks = {sid: mrml.segment_mask(seg, sid, fine_geometry, (40, 40, 40)) for sid in before}
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(tmp_path / "fine.seg.nrrd"))
    assert storage.WriteData(seg)
    reloaded = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "reloaded")
    assert storage.ReadData(reloaded)
    assert {sid: _native_segment_voxels(reloaded, sid) for sid in before} == before
    for sid in before:  # the same voxels, not only as many
        np.testing.assert_array_equal(mrml.segment_mask(reloaded, sid, fine_geometry, (40, 40, 40)), masks[sid])
    assert _native_segment_voxels(reloaded, "livertumorseg_liver") == ((0.5, 0.5, 0.5), 8 * int((labels == 1).sum()))
    np.testing.assert_array_equal(mrml.segmentation_to_labels(reloaded, ct_geometry, labels.shape), labels)
    np.testing.assert_array_equal(mrml.segmentation_to_labels(seg, ct_geometry, labels.shape), labels)


def _sorted_rows(points: np.ndarray) -> np.ndarray:
    return points[np.lexsort(np.round(points, 4).T[::-1])]


def _segment_voxels_in_world(seg, segment_id) -> np.ndarray:
    """World (RAS, parent transforms applied) centres of a segment's stored voxels, rows sorted."""
    from vtk.util import numpy_support
    image = slicer.vtkOrientedImageData()
    slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(seg, segment_id, image, False)
    x0, _, y0, _, z0, _ = image.GetExtent()
    nx, ny, nz = image.GetDimensions()
    values = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(nz, ny, nx)
    ijk = np.argwhere(values == seg.GetSegmentation().GetSegment(segment_id).GetLabelValue())[:, ::-1] + [x0, y0, z0]
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    to_world = mrml.node_to_world(seg) @ mrml._matrix_to_numpy(matrix)
    return _sorted_rows((to_world[:3, :3] @ ijk.T).T + to_world[:3, 3])


@needs_slicer
def test_segmentation_under_a_transform_shows_the_labels_where_the_ct_is(scene):
    """CT and output segmentation under the same registration transform (50 mm right, rotated): the liver must
    show in the world where the CT shows it, not with the transform applied twice; reading back gives the
    labels; a new segmentation of a transformed CT is put under the CT's transform (it follows the CT)."""
    geometry = _oblique_geometry()
    ct = _add_volume_node(scene, np.zeros((7, 9, 11), np.int16), geometry, name="registered CT")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    to_parent = np.eye(4)
    c, s = np.cos(0.4), np.sin(0.4)
    to_parent[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    to_parent[:3, 3] = [50.0, 0.0, -5.0]
    transform.SetMatrixTransformToParent(mrml._numpy_to_matrix(to_parent))
    ct.SetAndObserveTransformNodeID(transform.GetID())
    world = mrml.ctvolume_from_volume_node(ct).geometry  # what the job segments on
    labels = _labels()
    liver_voxels_ijk = np.argwhere(labels == 1)[:, ::-1]
    expected_world = (world.ijk_to_ras()[:3, :3] @ liver_voxels_ijk.T).T + world.ijk_to_ras()[:3, 3]

    existing = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "follows the CT")
    existing.SetAndObserveTransformNodeID(transform.GetID())
    new = mrml.labels_to_segmentation_node(scene, labels, world, reference_volume_node=ct)
    assert new.GetTransformNodeID() == transform.GetID()
    for seg in (mrml.labels_to_segmentation_node(scene, labels, world, segmentation_node=existing), new):
        np.testing.assert_allclose(_segment_voxels_in_world(seg, "livertumorseg_liver"), _sorted_rows(expected_world),
                                   atol=1e-6)
        np.testing.assert_array_equal(mrml.segmentation_to_labels(seg, world, labels.shape), labels)

    sheared = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shear")
    m = np.eye(4)
    m[0, 1] = 0.5
    sheared.SetMatrixTransformToParent(mrml._numpy_to_matrix(m))
    other = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "sheared")
    other.SetAndObserveTransformNodeID(sheared.GetID())
    with pytest.raises(InputError, match="shearing transform"):
        mrml.labels_to_segmentation_node(scene, labels, world, segmentation_node=other)


@needs_slicer
def test_bad_label_maps_are_refused(scene):
    geometry = _oblique_geometry()
    with pytest.raises(LabelError, match=r"values \[3\]"):
        mrml.labels_to_segmentation_node(scene, np.full((2, 2, 2), 3, np.uint8), geometry)
    with pytest.raises(LabelError, match="3D"):
        mrml.labels_to_segmentation_node(scene, np.zeros((2, 2), np.uint8), geometry)
    with pytest.raises(LabelError, match="integers"):
        mrml.labels_to_segmentation_node(scene, np.zeros((2, 2, 2), np.float32), geometry)


@needs_slicer
def test_show_in_3d_creates_closed_surfaces(scene):
    seg = mrml.labels_to_segmentation_node(scene, _labels(), _oblique_geometry())
    mrml.show_segmentation_in_3d(seg)
    assert seg.GetSegmentation().ContainsRepresentation("Closed surface")
    surface = seg.GetSegmentation().GetSegment("livertumorseg_liver").GetRepresentation("Closed surface")
    assert surface.GetNumberOfPoints() > 0


@needs_slicer
def test_seg_nrrd_reloads_with_same_segments_and_geometry(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    geometry = _oblique_geometry()
    labels = _labels()
    path = mrml.write_seg_nrrd(tmp_path / "result.seg.nrrd", labels, geometry)
    assert path.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["result.seg.nrrd"]

    other_scene = mrml.make_headless_scene()
    node = mrml.read_seg_nrrd(other_scene, path)
    segmentation = node.GetSegmentation()
    assert list(segmentation.GetSegmentIDs()) == ["livertumorseg_liver", "livertumorseg_tumor"]
    assert [segmentation.GetSegment(i).GetName() for i in segmentation.GetSegmentIDs()] == ["Liver", "Liver tumor"]
    assert mrml.segment_terminology_tag(segmentation.GetSegment("livertumorseg_tumor")) == TUMOR_TAG
    np.testing.assert_allclose(segmentation.GetSegment("livertumorseg_liver").GetColor(),
                               np.array([221, 130, 101]) / 255, atol=1e-5)
    np.testing.assert_array_equal(mrml.segmentation_to_labels(node, geometry, labels.shape), labels)

    image = sitk.ReadImage(str(path))  # an LPS image on the CT's full grid (not cropped)
    assert image.GetSize() == (11, 9, 7)
    np.testing.assert_allclose(image.GetOrigin(), geometry.origin, atol=1e-4)
    np.testing.assert_allclose(image.GetDirection(), geometry.direction, atol=1e-5)
    np.testing.assert_allclose(image.GetSpacing(), geometry.spacing, atol=1e-5)


@needs_slicer
def test_seg_nrrd_with_no_tumor_keeps_empty_tumor_segment(tmp_path):
    geometry = ImageGeometry(spacing=(1, 1, 1))
    labels = np.zeros((3, 4, 5), np.uint8)
    labels[1, 1:3, 1:4] = 1
    path = mrml.write_seg_nrrd(tmp_path / "liver_only.seg.nrrd", labels, geometry)
    node = mrml.read_seg_nrrd(mrml.make_headless_scene(), path)
    assert node.GetSegmentation().GetNumberOfSegments() == 2
    np.testing.assert_array_equal(mrml.segmentation_to_labels(node, geometry, labels.shape), labels)


@needs_slicer
def test_seg_nrrd_refuses_overwrite_and_wrong_suffix(tmp_path):
    geometry = ImageGeometry(spacing=(1, 1, 1))
    labels = np.zeros((2, 2, 2), np.uint8)
    path = tmp_path / "a.seg.nrrd"
    path.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError):
        mrml.write_seg_nrrd(path, labels, geometry)
    assert path.read_bytes() == b"keep me"
    mrml.write_seg_nrrd(path, labels, geometry, overwrite=True)
    assert path.read_bytes()[:4] == b"NRRD"
    with pytest.raises(InputError, match=r"\.seg\.nrrd"):
        mrml.write_seg_nrrd(tmp_path / "a.nrrd", labels, geometry)
    with pytest.raises(InputError, match="does not exist"):
        mrml.read_seg_nrrd(mrml.make_headless_scene(), tmp_path / "missing.seg.nrrd")


def _damaged_seg_nrrd(tmp_path, damage):
    """A .seg.nrrd damaged as ``damage`` says: a header ITK cannot parse, a broken gzip stream, or a file the
    storage node read up to a C++ abort or a tens-of-GB allocation (helper-4's audit: zero spacing, parallel axes,
    an extent of -2e9 or 2e9), silently wrongly (a text LabelValue as 0, a missing layer dropped) or waited on for
    ever ('data file: /dev/stdin')."""
    path = tmp_path / "bad.seg.nrrd"
    if damage == "type":
        path.write_bytes(b"NRRD0004\ntype: garbage\ndimension: 3\nsizes: 2 2 2\nencoding: raw\n\n" + bytes(8))
        return path
    if damage == "gzip":
        path.write_bytes(b"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 4 4 4\nencoding: gzip\n\nnot gzip data")
        return path
    labels = np.zeros((7, 9, 11), np.uint8)
    labels[2:5, 2:7, 2:9] = 1
    labels[3, 4:6, 4:6] = 2
    good = mrml.write_seg_nrrd(tmp_path / "good.seg.nrrd", labels, ImageGeometry(spacing=(0.8, 0.9, 2.5))).read_bytes()
    replaced = {"zero_spacing": (b"space directions: (0.80000000000000004,0,0)", b"space directions: (0,0,0)"),
                "parallel_axes": (b"space directions: (0.80000000000000004,0,0) (0,0.89999999999999991,0)",
                                  b"space directions: (1,0,0) (1,0,0)"),
                "extent_below": (b"Segment0_Extent:=2 8 2 6 2 4", b"Segment0_Extent:=-2000000000 8 2 6 2 4"),
                "extent_above": (b"Segment0_Extent:=2 8 2 6 2 4", b"Segment0_Extent:=0 2000000000 0 2 0 2"),
                "label_text": (b"Segment0_LabelValue:=1", b"Segment0_LabelValue:=abc"),
                "label_huge": (b"Segment0_LabelValue:=1", b"Segment0_LabelValue:=99999999999999999999"),
                "layer": (b"Segment0_Layer:=0", b"Segment0_Layer:=5"),
                "stdin": (b"encoding: gzip\n", b"encoding: gzip\ndata file: /dev/stdin\n")}[damage]
    assert replaced[0] in good, damage
    path.write_bytes(good.replace(replaced[0], replaced[1]))
    return path


@needs_slicer
@pytest.mark.parametrize("damage", ["type", "gzip", "zero_spacing", "parallel_axes", "extent_below", "extent_above",
                                    "label_text", "label_huge", "layer", "stdin"])
def test_a_damaged_seg_nrrd_is_refused_without_ending_the_process_or_leaving_nodes(tmp_path, damage):
    """A header ITK cannot parse ended the whole process inside the storage node (an uncaught C++ exception), so
    this test runs the read in a child process (an address-space cap of 4 GB, stdin open) and expects its
    InputError line and a clean exit."""
    import subprocess
    import sys
    import textwrap

    path = _damaged_seg_nrrd(tmp_path, damage)
    script = textwrap.dedent(f"""
        from LiverTumorSegLib import mrml
        from LiverTumorSegLib.errors import InputError
        scene = mrml.make_headless_scene()
        before = scene.GetNumberOfNodes()
        try:
            mrml.read_seg_nrrd(scene, {str(path)!r})
        except InputError as exc:  # LabelError is one
            print("refused:", exc)
        print("nodes added:", scene.GetNumberOfNodes() - before)
    """)
    def cap_memory():  # the extent of 2e9 grew a process to 22 GB before the OOM killer ended it
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.PIPE, preexec_fn=cap_memory if sys.platform.startswith("linux") else None)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "refused: " in proc.stdout and "nodes added: 0" in proc.stdout, proc.stdout
    said = {"type": "Cannot read", "gzip": "Cannot read", "zero_spacing": "invalid voxel spacing",
            "parallel_axes": "direction matrix", "extent_below": "reaches outside", "extent_above": "reaches outside",
            "label_text": "not a whole number", "label_huge": "LabelValue 99999999999999999999, but its voxels hold "
            "1..255", "layer": "is in layer 5, but the file has 1", "stdin": "is not a regular file (a pipe, socket or device"}
    assert said[damage] in proc.stdout, proc.stdout


REPORT = {
    "liver_volume_ml": 1520.0, "tumor_volume_ml": 12.5, "tumor_burden_percent": 0.822,
    "lesions": [
        {"id": 1, "volume_ml": 10.0, "long_axis_mm": 31.5, "short_axis_mm": 20.0, "recist_target": True,
         "centroid_ras_mm": [1.0, 2.0, 3.0],
         "centroid_lps_mm": [-1.0, -2.0, 3.0], "mean_hu": 61.0, "mean_tumor_probability": 0.91,
         "peak_tumor_probability": 0.99987, "contrast_to_liver_hu": -32.46},
        {"id": 2, "volume_ml": 2.5, "long_axis_mm": 15.0, "short_axis_mm": 9.5, "recist_target": False,
         "centroid_ras_mm": [-4.0, 5.5, 60.0],
         "centroid_lps_mm": [4.0, -5.5, 60.0], "mean_hu": 48.5, "location": "right lobe"},
    ],
}


@needs_slicer
def test_lesion_table_has_one_row_per_lesion(scene):
    table = mrml.create_lesion_table_node(scene, REPORT)
    rows = mrml.lesion_table_rows(table)
    assert len(rows) == 2 and table.GetName() == "Liver lesions"
    assert [r["Lesion"] for r in rows] == [1, 2]
    assert [r["Volume"] for r in rows] == [10.0, 2.5]
    assert [r["Long axis"] for r in rows] == [31.5, 15.0] and [r["Short axis"] for r in rows] == [20.0, 9.5]
    assert [r["RECIST target"] for r in rows] == [1, 0]
    assert [r["Mean HU"] for r in rows] == [61.0, 48.5]
    assert (rows[1]["Centroid R"], rows[1]["Centroid A"], rows[1]["Centroid S"]) == (-4.0, 5.5, 60.0)
    assert [r["Location"] for r in rows] == ["axial S 3.0 mm", "right lobe"]
    assert [r["Tumor probability"] for r in rows] == ["0.91", ""]     # empty, not "nan", when the report has none
    # the peak a peak-reading model's rule reads: 4 places (2 would show 1.00 for every lesion such a rule keeps)
    assert [r["Peak tumor probability"] for r in rows] == ["0.9999", ""]
    assert rows[0]["Contrast to liver"] == -32.5 and math.isnan(rows[1]["Contrast to liver"])  # a number: sortable
    assert table.GetColumnUnitLabel("Contrast to liver") == "HU"
    assert table.GetLocked()                                           # read-only: row selection reads "Lesion"
    assert table.GetColumnUnitLabel("Volume") == "mL"
    assert table.GetColumnUnitLabel("Long axis") == "mm" and table.GetColumnUnitLabel("Short axis") == "mm"
    assert float(table.GetAttribute("LiverTumorSeg.liver_volume_ml")) == 1520.0
    assert float(table.GetAttribute("LiverTumorSeg.tumor_burden_percent")) == pytest.approx(0.822)
    assert table.GetAttribute("LiverTumorSeg.lesion_count") == "2"  # int() reads it (it was "2.0")


@needs_slicer
def test_lesion_table_is_reused_and_can_be_empty(scene):
    table = mrml.create_lesion_table_node(scene, REPORT)
    no_tumor = {"liver_volume_ml": 1400.0, "tumor_volume_ml": 0.0, "tumor_burden_percent": 0.0, "lesions": []}
    same = mrml.create_lesion_table_node(scene, no_tumor, table_node=table)
    assert same is table and mrml.lesion_table_rows(table) == []
    assert table.GetTable().GetNumberOfColumns() == len(mrml.LESION_TABLE_COLUMNS)
    assert float(table.GetAttribute("LiverTumorSeg.lesion_count")) == 0


@needs_slicer
def test_lesion_and_change_tables_show_their_column_names_as_headers(scene):
    """Slicer's table view shows A, B, C with the names in a bold first data row unless the node says otherwise;
    since late 2023 it shows each column's title, so the titles are the names."""
    lesions = mrml.create_lesion_table_node(scene, REPORT)
    change = mrml.create_change_table_node(scene, {"lesions": [], "response": "NE"})
    # the header carries the unit ('Volume (mL)'): Slicer's view shows the unit label only as a tooltip (helper-35)
    for table, columns in ((lesions, mrml.LESION_TABLE_COLUMNS), (change, mrml.CHANGE_TABLE_COLUMNS)):
        assert table.GetUseColumnTitleAsColumnHeader()
        assert [table.GetColumnTitle(c[0]) for c in columns] == [f"{c[0]} ({c[2]})" if c[2] else c[0] for c in columns]
    assert lesions.GetColumnTitle("Volume") == "Volume (mL)" and lesions.GetColumnTitle("Lesion") == "Lesion"
    again = mrml.create_lesion_table_node(scene, REPORT, table_node=lesions)  # reused: still headers, no stale title
    assert again.GetUseColumnTitleAsColumnHeader() and again.GetColumnTitle("Volume") == "Volume (mL)"
    assert again.GetTable().GetColumnByName("Volume") is not None  # the column keeps its name


def test_tables_of_slicer_releases_before_column_titles_use_the_name_switch():
    """A table node of a Slicer release without ``SetUseColumnTitleAsColumnHeader`` (before Slicer PR 7283)."""
    class OldTableNode:
        switched = None

        def SetUseColumnNameAsColumnHeader(self, on):
            self.switched = on

    node = OldTableNode()
    mrml.show_column_names_as_headers(node)
    assert node.switched is True


def _seg_nrrd_terminology_entries(path):
    """``{segment name: terminology entry string}`` from a .seg.nrrd header (``SegmentN_Tags`` fields)."""
    header = Path(path).read_bytes().split(b"\n\n", 1)[0].decode("latin-1")
    fields = dict(line.split(":=", 1) for line in header.splitlines() if ":=" in line)
    entries = {}
    for key, value in fields.items():
        if key.startswith("Segment") and key.endswith("_Tags"):
            tags = dict(t.split(":", 1) for t in value.split("|") if ":" in t)
            entries[fields[key.replace("_Tags", "_Name")]] = tags["TerminologyEntry"]
    return entries


def test_seg_nrrd_terminology_entries_use_lists_that_resolve_in_slicer_5_6(tmp_path):
    """The entry strings written into the file: tumor Neoplasm from the DICOM master list (the 5.6 General
    Anatomy list has no Neoplasm), liver from the General Anatomy list; Slicer's own parser reads both."""
    slicer = pytest.importorskip("slicer")
    labels = np.zeros((3, 4, 5), np.uint8)
    labels[1, 1, 1], labels[1, 2, 2] = 1, 2
    path = mrml.write_seg_nrrd(tmp_path / "x.seg.nrrd", labels, ImageGeometry(spacing=(1.0, 1.0, 2.0)))
    entries = _seg_nrrd_terminology_entries(path)
    assert set(entries) == {"Liver", "Liver tumor"}
    tumor = mrml.parse_terminology_tag(entries["Liver tumor"])
    assert tumor["context"] == "Segmentation category and type - DICOM master list"
    assert tumor["category"] == ("SCT", "49755003", "Morphologically Altered Structure")
    assert tumor["type"] == ("SCT", "108369006", "Neoplasm") and tumor["type_modifier"] is None
    assert tumor["anatomic_context"] == "Anatomic codes - DICOM master list"
    assert tumor["anatomic_region"] == ("SCT", "10200004", "Liver")
    liver = mrml.parse_terminology_tag(entries["Liver"])
    assert liver["context"] == "Segmentation category and type - 3D Slicer General Anatomy list"
    assert (liver["category"], liver["type"]) == (("SCT", "123037004", "Anatomical Structure"),
                                                  ("SCT", "10200004", "Liver"))
    assert liver["anatomic_region"] is None
    for text in entries.values():  # Slicer's own deserializer accepts the strings
        entry = slicer.vtkSlicerTerminologyEntry()
        assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(text, entry)
    entry = slicer.vtkSlicerTerminologyEntry()
    slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(entries["Liver tumor"], entry)
    assert entry.GetTerminologyContextName() == tumor["context"]
    assert entry.GetTypeObject().GetCodeValue() == "108369006"
    with pytest.raises(ValueError, match="7"):
        mrml.parse_terminology_tag("a~b")


@needs_slicer
def test_probability_volume_node_shows_a_heat_map_with_colour_bar(scene):
    geometry = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    probability = np.linspace(0, 1, 60, dtype=np.float32).reshape(3, 4, 5)
    colors = scene._livertumorseg_logics[1]
    node = mrml.probability_volume_node(scene, probability, geometry, name="p", colors_logic=colors)
    import slicer
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), probability)
    display = node.GetDisplayNode()
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == (0.0, 1.0)
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == pytest.approx(0.05)
    assert display.GetColorNodeID() == mrml.PROBABILITY_COLOR_NODE_ID
    legend = colors.GetColorLegendDisplayNode(node)
    assert legend is not None and legend.GetTitleText() == "p"


@needs_slicer
def test_a_result_leaves_the_views_that_show_another_ct_as_the_user_set_them():
    """A result set its CT as the background of every slice view (Slicer's setSliceViewerLayers), so a layout with
    the baseline CT in the red view and the follow-up in the others showed the follow-up in all three after segmenting
    it, its tumor probability map over it. Where a view already shows the CT, the others keep their volumes and
    foregrounds; the map goes over the views of the CT only. A CT shown in no view is shown in all of them."""
    scene = mrml.make_headless_scene()
    geometry = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    baseline = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "baseline CT")
    followup = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "follow-up CT")
    baseline_map = mrml.probability_volume_node(scene, np.full((2, 3, 4), 0.5, np.float32), geometry, name="b")
    followup_map = mrml.probability_volume_node(scene, np.full((2, 3, 4), 0.5, np.float32), geometry, name="f")
    red, yellow, green = (scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode") for _ in range(3))
    red.SetBackgroundVolumeID(baseline.GetID())
    red.SetForegroundVolumeID(baseline_map.GetID())
    red.SetForegroundOpacity(0.3)
    for view in (yellow, green):
        view.SetBackgroundVolumeID(followup.GetID())

    def layers():
        return [(v.GetBackgroundVolumeID(), v.GetForegroundVolumeID(), v.GetForegroundOpacity())
                for v in (red, yellow, green)]

    shown = mrml.show_result_in_slice_views(scene, followup, followup_map)
    assert shown == [yellow, green]
    assert layers() == [(baseline.GetID(), baseline_map.GetID(), 0.3),
                        (followup.GetID(), followup_map.GetID(), 0.5), (followup.GetID(), followup_map.GetID(), 0.5)]
    mrml.show_result_in_slice_views(scene, followup)  # a run without the map: off the follow-up's views only
    assert layers() == [(baseline.GetID(), baseline_map.GetID(), 0.3), (followup.GetID(), None, 0.5),
                        (followup.GetID(), None, 0.5)]
    third = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "a CT in no view")
    assert mrml.show_result_in_slice_views(scene, third) == [red, yellow, green]
    assert [v.GetBackgroundVolumeID() for v in (red, yellow, green)] == [third.GetID()] * 3
    assert red.GetForegroundVolumeID() is None  # the baseline's map does not lie over another CT


@needs_slicer
def test_hide_probability_maps_takes_only_the_maps_off_the_slice_views():
    """A result without a probability map left the previous run's map shown over it (Slicer keeps the current
    foreground); the user's own overlay in another view stays."""
    scene = mrml.make_headless_scene()
    geometry = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    old_map = mrml.probability_volume_node(scene, np.full((2, 3, 4), 0.5, dtype=np.float32), geometry, name="old")
    new_map = mrml.probability_volume_node(scene, np.full((2, 3, 4), 0.5, dtype=np.float32), geometry, name="new")
    overlay = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "user's PET")
    views = []
    for foreground in (old_map, overlay, new_map, None):
        composite = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
        composite.SetForegroundVolumeID(foreground.GetID() if foreground is not None else None)
        views.append(composite)
    assert old_map.GetAttribute(mrml.PROBABILITY_MAP_ATTRIBUTE) == "1"
    assert overlay.GetAttribute(mrml.PROBABILITY_MAP_ATTRIBUTE) is None
    assert mrml.hide_probability_maps(scene, keep=new_map) == 1
    assert [v.GetForegroundVolumeID() for v in views] == [None, overlay.GetID(), new_map.GetID(), None]
    assert mrml.hide_probability_maps(scene) == 1
    assert [v.GetForegroundVolumeID() for v in views] == [None, overlay.GetID(), None, None]
    assert scene.IsNodePresent(old_map) and scene.IsNodePresent(new_map)   # the maps stay in the scene


@needs_slicer
@pytest.mark.parametrize("bad, words", [
    (np.array([[[0, 1, 2]]], dtype=np.int16), "from 0 to 2"),  # a label map
    (np.full((2, 2, 2), np.nan, dtype=np.float32), "NaN"),
    (np.zeros((4, 4), dtype=np.float32), "3-D"),
    (np.zeros((0, 4, 4), dtype=np.float32), "3-D"),
    (np.zeros((2, 2, 2), dtype=bool), "not bool"),
    (np.full((2, 2, 2), -0.5), "from -0.5"),
])
def test_probability_volume_node_refuses_what_is_no_probability_map(scene, bad, words):
    """A 0/1/2 label map was shown as a heat map saturated at 1, NaN as VTK's undefined colours; the refusal comes
    before any node is added."""
    nodes = scene.GetNumberOfNodes()
    with pytest.raises(InputError, match=words):
        mrml.probability_volume_node(scene, bad, ImageGeometry(spacing=(1.0, 1.0, 2.0)), name="p")
    assert scene.GetNumberOfNodes() == nodes


@needs_slicer
def test_a_softmax_rounding_past_1_is_shown_and_a_label_map_node_is_not_refilled(scene):
    """A float64 map reaching 1 + 2**-52 (a softmax sum can) was refused with 'values run from 0 to 1;
    probabilities lie in 0..1'; a label map node given as ``node`` was renamed and filled with floats, then the
    call failed in its display node (helper-4's audit)."""
    import slicer
    import vtk

    geometry = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    node = mrml.probability_volume_node(scene, np.array([[[1 + 2 ** -52, 0.0, -1e-9]]]), geometry, name="p")
    assert slicer.util.arrayFromVolume(node).tolist() == [[[1.0, 0.0, 0.0]]]
    with pytest.raises(InputError, match=r"run from 0 to 1.00001"):
        mrml.probability_volume_node(scene, np.array([[[1.00001, 0.0]]]), geometry, name="p")
    labels = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "my labels")
    image = vtk.vtkImageData()
    image.SetDimensions(2, 2, 2)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    labels.SetAndObserveImageData(image)
    with pytest.raises(InputError, match="is a vtkMRMLLabelMapVolumeNode"):
        mrml.probability_volume_node(scene, np.full((2, 2, 2), 0.5), geometry, name="prob", node=labels)
    assert labels.GetName() == "my labels" and labels.GetImageData().GetScalarTypeAsString() == "unsigned char"


@needs_slicer
def test_probability_volume_node_takes_the_uint8_map_as_segment_writes_it(scene):
    """A uint8 map (255 x p) is shown as float32 0..1, the numbers ``astype(np.float32) / 255.0`` gave, bit for bit,
    without a float copy beside the node's own voxels; float64 and float32 maps keep their float32 values."""
    import slicer
    geometry = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    stored = np.arange(256, dtype=np.uint8).repeat(2)[:480].reshape(4, 8, 15)
    node = mrml.probability_volume_node(scene, stored, geometry, name="p")
    shown = slicer.util.arrayFromVolume(node)
    assert shown.dtype == np.float32 and shown.tobytes() == (stored.astype(np.float32) / 255.0).tobytes()
    assert node.GetImageData().GetDimensions() == (15, 8, 4)
    display = node.GetDisplayNode()
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == (0.0, 1.0)
    as_float64 = np.linspace(0, 1, 480).reshape(4, 8, 15)
    mrml.probability_volume_node(scene, as_float64, geometry, node=node)
    assert slicer.util.arrayFromVolume(node).tobytes() == as_float64.astype(np.float32).tobytes()


@needs_slicer
def test_a_rerun_keeps_the_users_display_settings_and_a_surface_segmentation_is_refused(scene):
    """Removing and re-adding our segments reset what users set on them (a hidden liver showed again); writing
    into a segmentation stored as closed surfaces converted the labels and lost small lesions silently."""
    geometry = _oblique_geometry()
    labels = _labels()
    seg = mrml.labels_to_segmentation_node(scene, labels, geometry)
    display = seg.GetDisplayNode()
    display.SetSegmentVisibility("livertumorseg_liver", False)
    display.SetSegmentOpacity2DFill("livertumorseg_tumor", 0.2)
    seg.GetSegmentation().GetSegment("livertumorseg_tumor").SetTag("reader", "checked")
    mrml.labels_to_segmentation_node(scene, labels, geometry, segmentation_node=seg)
    assert not display.GetSegmentVisibility("livertumorseg_liver")
    assert display.GetSegmentOpacity2DFill("livertumorseg_tumor") == pytest.approx(0.2)
    tag = vtk.mutable("")
    assert seg.GetSegmentation().GetSegment("livertumorseg_tumor").GetTag("reader", tag) and str(tag) == "checked"
    np.testing.assert_array_equal(mrml.segmentation_to_labels(seg, geometry, labels.shape), labels)

    surfaces = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "from a model")
    surfaces.GetSegmentation().SetSourceRepresentationName(
        slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName())  # as when built from a model
    sphere = vtk.vtkSphereSource()
    sphere.Update()
    surfaces.AddSegmentFromClosedSurfaceRepresentation(sphere.GetOutput(), "organ", [1.0, 0.0, 0.0])
    with pytest.raises(InputError, match="stores its segments as 'Closed surface'.*Create new"):
        mrml.labels_to_segmentation_node(scene, labels, geometry, segmentation_node=surfaces)


@needs_slicer
def test_a_rerun_into_a_reloaded_seg_nrrd_writes_the_tumor_and_fresh_surfaces(tmp_path):
    """A .seg.nrrd keeps Liver and Liver tumor in one layer (values 1 and 2). Re-running into it left the separated
    tumor layer at label value 2 while the new mask holds 1s: the tumor segment read back empty (468 tumor voxels
    became 0 in an audit), and the 3D surfaces kept showing the previous result."""
    geometry = _oblique_geometry()
    first = _labels()
    path = mrml.write_seg_nrrd(tmp_path / "result.seg.nrrd", first, geometry)
    reloaded = mrml.read_seg_nrrd(mrml.make_headless_scene(), path)
    segmentation = reloaded.GetSegmentation()
    mrml.show_segmentation_in_3d(reloaded)
    old_bounds = np.array(segmentation.GetSegment("livertumorseg_liver").GetRepresentation("Closed surface")
                          .GetBounds())
    second = np.zeros_like(first)
    second[4:7, 1:4, 6:11] = 1
    second[5, 2, 7:9] = 2
    mrml.labels_to_segmentation_node(reloaded.GetScene(), second, geometry, segmentation_node=reloaded)
    np.testing.assert_array_equal(mrml.segmentation_to_labels(reloaded, geometry, first.shape), second)
    mrml.show_segmentation_in_3d(reloaded)
    surface = segmentation.GetSegment("livertumorseg_liver").GetRepresentation("Closed surface")
    new_bounds = np.array(surface.GetBounds())
    assert surface.GetNumberOfPoints() > 0 and not np.allclose(new_bounds, old_bounds, atol=1.0)
    # the surface lies around the new labels: its centre near the new liver's centre in world coordinates
    k, j, i = np.nonzero(second >= 1)
    centre = (geometry.ijk_to_ras() @ np.array([i.mean(), j.mean(), k.mean(), 1.0]))[:3]
    np.testing.assert_allclose((new_bounds[0::2] + new_bounds[1::2]) / 2, centre, atol=3.0)


@needs_slicer
def test_a_users_segment_named_liver_is_replaced_by_ours_not_kept_beside_it(scene):
    """A hand-drawn 'Liver' (ID Segment_1) was not counted as ours: no confirmation, and a second 'Liver' beside
    it, which readers that go by name merged (2205 liver voxels read where ours had 1413)."""
    geometry = _oblique_geometry()
    labels = _labels()
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "user's")
    seg.GetSegmentation().AddEmptySegment("Segment_1", "Liver", [1, 0, 0])
    assert mrml.existing_output_segment_ids(seg) == ["Segment_1"]
    with pytest.raises(OutputExistsError, match="already has the segments"):
        mrml.labels_to_segmentation_node(scene, labels, geometry, segmentation_node=seg, replace_existing=False)
    mrml.labels_to_segmentation_node(scene, labels, geometry, segmentation_node=seg)
    segmentation = seg.GetSegmentation()
    names = [segmentation.GetSegment(i).GetName() for i in segmentation.GetSegmentIDs()]
    assert sorted(names) == ["Liver", "Liver tumor"] and segmentation.GetSegment("Segment_1") is None
    np.testing.assert_array_equal(mrml.segmentation_to_labels(seg, geometry, labels.shape), labels)


@needs_slicer
def test_the_probability_volume_moves_with_its_ct_like_the_segmentation(scene):
    """The probability map got world geometry and no transform: when the CT's transform changed after the run,
    the segmentation followed the CT and the map stayed behind (50 mm off in an audit)."""
    geometry = ImageGeometry(spacing=(1.0, 1.0, 2.0), origin=(5.0, -3.0, 10.0))
    probability = np.linspace(0, 1, 60, dtype=np.float32).reshape(3, 4, 5)
    ct = _add_volume_node(scene, np.zeros((3, 4, 5), np.int16), ImageGeometry(spacing=(1.0, 1.0, 2.0)), "moved CT")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = vtk.vtkMatrix4x4()
    shift.SetElement(0, 3, 10.0)
    transform.SetMatrixTransformToParent(shift)
    ct.SetAndObserveTransformNodeID(transform.GetID())
    node = mrml.probability_volume_node(scene, probability, geometry, follow=ct)
    assert node.GetTransformNodeID() == transform.GetID()

    def world_ijk_to_ras():
        return mrml.world_ijk_to_ras(node)

    np.testing.assert_allclose(world_ijk_to_ras(), geometry.ijk_to_ras(), atol=1e-6)  # shows where it was made
    shift.SetElement(0, 3, 60.0)
    transform.SetMatrixTransformToParent(shift)
    moved = geometry.ijk_to_ras().copy()
    moved[0, 3] += 50.0
    np.testing.assert_allclose(world_ijk_to_ras(), moved, atol=1e-6)  # and moves with the CT


@needs_slicer
def test_a_segmentation_moved_partly_off_the_ct_grid_is_read_on_that_grid(scene):
    """A segmentation nudged 8 mm (two slices) superior with a parent transform, its liver touching the CT's last
    slice: the resample padded to the union of both extents, so reading it on the CT's grid (Update lesion table,
    Compare) failed with 'cannot reshape array'. It now gives the labels moved two slices up, the part past the
    CT's last slice cut off."""
    import vtk

    geometry = ImageGeometry(spacing=(2.0, 2.0, 4.0), origin=(-10.0, -10.0, 20.0))
    ct = _add_volume_node(scene, np.zeros((6, 10, 10), np.int16), geometry, name="CT")
    labels = np.zeros((6, 10, 10), np.uint8)
    labels[2:6, 3:7, 3:7] = 1
    labels[3:5, 4:6, 4:6] = 2
    segmentation = mrml.labels_to_segmentation_node(scene, labels, geometry, reference_volume_node=ct)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(2, 3, 8.0)  # S (RAS z) + 8 mm = two 4 mm slices up
    transform.SetMatrixTransformToParent(matrix)
    segmentation.SetAndObserveTransformNodeID(transform.GetID())
    expected = np.zeros_like(labels)
    expected[4:6] = labels[2:4]  # slices 2..5 move to 4..7; 6 and 7 lie past the CT
    np.testing.assert_array_equal(mrml.segmentation_to_labels(segmentation, geometry, labels.shape), expected)


@needs_slicer
def test_tumor_segments_added_by_a_reader_are_read_as_tumor(scene):
    """Segment Editor's 'Split islands to segments' makes 'Liver tumor -_1'; the panel's lesion table read only
    'Liver tumor' while `measure` of the saved .seg.nrrd counts both."""
    import slicer
    geometry = _oblique_geometry()
    labels = _labels()
    seg = mrml.labels_to_segmentation_node(scene, labels, geometry)
    extra = np.zeros(labels.shape, np.uint8)
    extra[1, 6, 8] = 1                                            # a lesion the reader drew in its own segment
    other = np.zeros(labels.shape, np.uint8)
    other[5, 2, 1] = 1
    for name, mask in (("Liver tumor -_1", extra), ("Portal vein", other)):
        segment_id = seg.GetSegmentation().AddEmptySegment("", name)
        image = mrml.oriented_image_from_array(mask, geometry, [0, 0, 0])
        slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            image, seg, segment_id, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE, image.GetExtent())
    read = mrml.segmentation_to_labels(seg, geometry, labels.shape)
    expected = labels.copy()
    expected[1, 6, 8] = 2
    np.testing.assert_array_equal(read, expected)                 # the portal vein stays what it was (liver)


@needs_slicer
def test_a_result_without_tumor_has_an_empty_tumor_segment_that_shows_in_3d_without_a_vtk_error(scene):
    """The usual result (the sample CT has no tumor) stored 'Liver tumor' as a 1x1x1 zero labelmap, on which the
    3D surface failed ('vtkDiscreteFlyingEdges3D returned failure', an error in Slicer's log on every such run).
    Now empty as Slicer's own AddEmptySegment makes it."""
    import slicer
    import vtk

    geometry = ImageGeometry(spacing=(0.8, 0.8, 2.0))
    labels = np.zeros((12, 14, 16), dtype=np.uint8)  # (z, y, x)
    labels[3:9, 4:10, 5:12] = 1
    node = mrml.labels_to_segmentation_node(scene, labels, geometry)
    segmentation = node.GetSegmentation()
    converter = slicer.vtkSegmentationConverter
    tumor = segmentation.GetSegment(mrml.TUMOR_SEGMENT.segment_id)
    assert tumor.GetRepresentation(converter.GetBinaryLabelmapRepresentationName()).IsEmpty()
    previous = vtk.vtkOutputWindow.GetInstance()
    messages = vtk.vtkStringOutputWindow()
    vtk.vtkOutputWindow.SetInstance(messages)
    try:
        mrml.show_segmentation_in_3d(node)
    finally:
        vtk.vtkOutputWindow.SetInstance(previous)
    assert messages.GetOutput() == ""
    liver = segmentation.GetSegment(mrml.LIVER_SEGMENT.segment_id)
    assert liver.GetRepresentation(converter.GetClosedSurfaceRepresentationName()).GetNumberOfPoints() > 0
    np.testing.assert_array_equal(mrml.segmentation_to_labels(node, geometry, labels.shape), labels)


@needs_slicer
def test_every_segment_named_liver_in_any_case_is_read_as_liver_and_replaced_by_a_run(scene):
    """Of ten segments named 'Liver' in different cases ('liver', 'LIVER ', ...), only the first was read (Slicer's
    GetSegmentIdBySegmentName gives one); the other nine were left out of the liver, with a warning that called
    them 'neither liver nor tumor by name', while the .seg.nrrd reader counts them all; a run replaced only the
    first and kept nine 'Liver' segments beside its own."""
    import slicer
    geometry = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    shape = (4, 5, 10)
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "ten livers")
    names = ["liver", "LIVER", "Liver ", "lIver", "Liver", "liVer", "LiVeR", " liver", "LIVer", "livER"]
    for column, name in enumerate(names):
        mask = np.zeros(shape, np.uint8)
        mask[:, :, column] = 1
        segment = slicer.vtkSegment()
        segment.SetName(name)
        segment.AddRepresentation(mrml._labelmap_name(), mrml.oriented_image_from_array(mask, geometry))
        seg.GetSegmentation().AddSegment(segment, f"Segment_{column}")
    np.testing.assert_array_equal(mrml.segmentation_to_labels(seg, geometry, shape), np.ones(shape, np.uint8))
    assert mrml.segments_left_out(seg) == [] and mrml.left_out_warning(seg) == ""
    assert mrml.existing_output_segment_ids(seg) == [f"Segment_{c}" for c in range(10)]

    labels = np.zeros(shape, np.uint8)
    labels[1:3, 1:4, 2:8] = 1
    labels[2, 2, 3] = 2
    mrml.labels_to_segmentation_node(scene, labels, geometry, segmentation_node=seg)
    segmentation = seg.GetSegmentation()
    assert list(segmentation.GetSegmentIDs()) == ["livertumorseg_liver", "livertumorseg_tumor"]
    np.testing.assert_array_equal(mrml.segmentation_to_labels(seg, geometry, shape), labels)


@needs_slicer
def test_a_volume_whose_image_extent_does_not_start_at_zero_keeps_its_place(scene):
    """Image data whose extent starts at (2, 0, 1) (a script's vtkImageData, a cut-out) was read as if its first
    voxel were at IJK (0, 0, 0): its grid 2 voxels off where Slicer's views and Segmentations module put it."""
    import slicer
    from vtk.util import numpy_support
    geometry = _oblique_geometry()
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "cut-out")
    image = vtk.vtkImageData()
    image.SetExtent(2, 5, 0, 2, 1, 2)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    labels = np.random.default_rng(4).integers(0, 3, size=(2, 3, 4)).astype(np.uint8)
    numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = labels.ravel()
    node.SetAndObserveImageData(image)
    node.SetIJKToRASMatrix(mrml._numpy_to_matrix(geometry.ijk_to_ras()))

    volume = mrml.ctvolume_from_volume_node(node)
    np.testing.assert_array_equal(volume.array, labels)
    np.testing.assert_allclose(volume.geometry.ijk_to_ras(), geometry.ijk_to_ras() @ np.array(
        [[1, 0, 0, 2], [0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1.0]]), atol=1e-9)
    # Slicer's own import of the label map lands on that grid voxel for voxel
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "imported cut-out")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(node, seg)
    segmentation = seg.GetSegmentation()
    for index, name in enumerate(("Liver", "Liver tumor")):
        segmentation.GetNthSegment(index).SetName(name)
    np.testing.assert_array_equal(mrml.segmentation_to_labels(seg, volume.geometry, labels.shape), labels)


@needs_slicer
def test_a_recorded_reference_grid_is_held_to_the_memory_check_before_it_is_allocated(tmp_path):
    """read_seg_nrrd_labels (measure, evaluate, followup) embedded a cropped file into the grid its header's
    'Reference image geometry' names: a 3.5 KB file naming 100001^3 voxels ended in numpy's 'Unable to allocate
    910 TiB', and one naming 2000 x 2000 x 1000 took 4 GB before anything was checked."""
    from LiverTumorSegLib.errors import ResourceError
    from LiverTumorSegLib.segnrrd import read_seg_nrrd_labels

    labels = np.zeros((7, 9, 11), np.uint8)
    labels[2:5, 2:7, 2:9] = 1
    good = mrml.write_seg_nrrd(tmp_path / "good.seg.nrrd", labels, ImageGeometry(spacing=(0.8, 0.9, 2.5)))
    assert read_seg_nrrd_labels(good).array.shape == (7, 9, 11)
    data = good.read_bytes()
    assert b";0;10;0;8;0;6;" in data
    huge = tmp_path / "huge.seg.nrrd"
    huge.write_bytes(data.replace(b";0;10;0;8;0;6;", b";0;100000;0;100000;0;100000;"))
    with pytest.raises(ResourceError, match=r"its recorded reference grid.*\(100001, 100001, 100001\) needs about"):
        read_seg_nrrd_labels(huge)


@needs_slicer
def test_two_segments_with_one_label_value_in_one_layer_are_refused(tmp_path):
    """The tumor segment's LabelValue edited to the liver's (1, same layer) read as one 1038 mL tumor, burden 100 %,
    without a word (the fuzzing audit): their voxels cannot be told apart."""
    from LiverTumorSegLib.segnrrd import read_seg_nrrd_labels

    labels = np.zeros((7, 9, 11), np.uint8)
    labels[2:5, 2:7, 2:9] = 1
    labels[3, 4:6, 4:6] = 2
    good = mrml.write_seg_nrrd(tmp_path / "good.seg.nrrd", labels, ImageGeometry(spacing=(0.8, 0.9, 2.5)))
    data = good.read_bytes()
    assert b"Segment1_LabelValue:=2" in data
    bad = tmp_path / "bad.seg.nrrd"
    bad.write_bytes(data.replace(b"Segment1_LabelValue:=2", b"Segment1_LabelValue:=1"))
    with pytest.raises(LabelError, match="segments 'Liver' and 'Liver tumor' both have LabelValue 1 in layer 0"):
        read_seg_nrrd_labels(bad)


@needs_slicer
def test_table_warnings_and_change_report_nested_too_deep_read_as_none(scene):
    """A lesion table's warnings and a change table's report lie in the scene file: edited by hand into JSON nested
    thousands deep, json.loads raised RecursionError (not the ValueError caught), and the panel's summary or *Save
    change report...* raised; they now read as none, as unreadable JSON does."""
    deep = "[" * 5000 + "]" * 5000
    table = mrml.create_lesion_table_node(scene, {"lesions": [], "liver_volume_ml": 1.0})
    table.SetAttribute(mrml.LESION_TABLE_WARNINGS_ATTRIBUTE, deep)
    assert mrml.lesion_table_warnings(table) == []
    change_table = mrml.create_change_table_node(scene, {"lesions": [], "response": "SD"})
    mrml.set_change_report(change_table, {"lesions": [], "response": "SD"}).SetText(deep)
    assert mrml.change_report_of(change_table) is None
    for node in (table, change_table, change_table.GetNodeReference(mrml.CHANGE_REPORT_ROLE)):
        scene.RemoveNode(node)


@needs_slicer
def test_a_fractional_float_seg_nrrd_is_refused_before_the_storage_node_truncates_it(tmp_path):
    """Slicer's storage node truncates a float .seg.nrrd's values (0.5 -> 0) and loaded such a file's segments with
    parts of them missing, without a word; its check (shared with segnrrd's reader) refuses it, leaving no node."""
    from test_segnrrd import _phantom_labels, _write_nrrd_with_segments

    path = _write_nrrd_with_segments(tmp_path / "half.seg.nrrd", _phantom_labels().astype(np.float32) * 0.5, "float",
                                     "8 8 4", "domain domain domain", "(1,0,0) (0,1,0) (0,0,1)")
    scene = mrml.make_headless_scene()
    with pytest.raises(LabelError, match=r"not whole numbers \(e\.g\. 0\.5\)"):
        mrml.read_seg_nrrd(scene, path)
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0


def test_a_grid_holds_another_exactly_only_as_a_whole_number_subdivision_on_its_lattice():
    """grid_holds_grid_exactly: the grid itself, it shifted by whole voxels or flipped onto its own lattice, and
    Segment Editor's 2x oversampling hold a 1 mm grid's voxels; a half-voxel shift, a coarser grid, 0.7 mm voxels
    and a turned grid do not."""
    ct, _, fine = _liver_cube_and_half_voxel_grid()
    shifted, half, coarse, odd = np.eye(4), np.eye(4), np.diag([2.0, 2.0, 2.0, 1.0]), np.diag([0.7, 0.7, 5.0, 1.0])
    shifted[:3, 3] = [5.0, -3.0, 2.0]
    half[0, 3] = 0.5
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0])
    flipped[0, 3] = 19.0
    turn = math.radians(17.0)
    turned = np.eye(4)
    turned[:2, :2] = [[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]]
    for matrix, holds in ((np.eye(4), True), (fine, True), (shifted, True), (flipped, True), (half, False),
                          (coarse, False), (odd, False), (turned, False)):
        assert mrml.grid_holds_grid_exactly(matrix, ct) == holds, matrix


@needs_slicer
def test_a_result_into_a_segmentation_on_another_series_grid_would_be_resampled_on_saving(scene, tmp_path):
    """A result written into a segmentation whose user segments lie on another series' grid kept that reference grid
    (so as not to resample the user's segments), and saving the scene resampled the result onto it: 15 lesions
    reloaded as 6, the liver 5 % larger (the Slicer glue audit). result_resampled_on_saving tells such a node
    (the panel then writes into a new segmentation); an oversampling of the CT's grid, or a node of ours alone, is
    no such node."""
    ct_geometry, labels, fine = _liver_cube_and_half_voxel_grid()
    other = ImageGeometry(spacing=(0.7, 0.7, 5.0), origin=(-3.0, -3.0, -2.0))
    for name, grid, resampled in (("other series", other, True),
                                  ("oversampled", ImageGeometry.from_ijk_to_ras(fine), False)):
        seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        seg.CreateDefaultDisplayNodes()
        mrml._set_reference_geometry(seg, grid, (10, 40, 40))
        seg.GetSegmentation().AddEmptySegment("vessel", "Vessel", [1, 0, 0])
        slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            mrml.oriented_image_from_array(np.ones((2, 2, 2), np.uint8), grid), seg, "vessel",
            slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
        assert mrml.result_resampled_on_saving(seg, ct_geometry) == resampled, name
        assert not mrml.result_resampled_on_saving(seg, ct_geometry, replaced_ids=["vessel"])  # replaced: none left
    ours = mrml.labels_to_segmentation_node(scene, labels, ct_geometry)
    assert not mrml.result_resampled_on_saving(ours, ct_geometry)
    # what the check guards against: written there and saved, the result comes back otherwise
    seg = scene.GetFirstNodeByName("other series")
    mrml.labels_to_segmentation_node(scene, labels, ct_geometry, segmentation_node=seg)
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(tmp_path / "other.seg.nrrd"))
    assert storage.WriteData(seg)
    reloaded = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "reloaded")
    assert storage.ReadData(reloaded)
    assert not np.array_equal(mrml.segmentation_to_labels(reloaded, ct_geometry, labels.shape), labels)


@needs_slicer
def test_a_segmentation_without_a_reference_grid_is_judged_by_its_user_segments_grid(scene, tmp_path):
    """A segmentation made by Slicer's label map import records no reference grid; result_resampled_on_saving said
    False for it, the result went in, and saving resampled it onto the user segments' grid (a 0.59 mL lesion
    reloaded as 0.39 mL; the Slicer module audit). Now such a node is judged by the grid its user segments span:
    another series' or a coarser grid is told; the CT's own grid is not, and there the result reloads unchanged."""
    ct_geometry, labels, _ = _liver_cube_and_half_voxel_grid()
    grids = (("other series, no reference", ImageGeometry(spacing=(0.7, 0.7, 5.0), origin=(-3.0, -3.0, -2.0)), True),
             ("coarser, no reference", ImageGeometry(spacing=(2.0, 2.0, 2.0), origin=(0.5, 0.5, 0.5)), True),
             ("the CT's grid, no reference", ct_geometry, False))
    for name, grid, resampled in grids:
        seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        seg.CreateDefaultDisplayNodes()
        seg.GetSegmentation().AddEmptySegment("vessel", "Vessel", [1, 0, 0])
        slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            mrml.oriented_image_from_array(np.ones((2, 2, 2), np.uint8), grid), seg, "vessel",
            slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
        seg.GetSegmentation().AddEmptySegment("empty", "Not drawn yet", [0, 1, 0])  # no voxels: no grid of its own
        assert seg.GetSegmentation().GetConversionParameter(
            slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()) == ""
        assert mrml.result_resampled_on_saving(seg, ct_geometry) == resampled, name
        # what the answer stands for: written there, saved and read back
        mrml.labels_to_segmentation_node(scene, labels, ct_geometry, segmentation_node=seg)
        storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
        storage.SetFileName(str(tmp_path / f"{len(name)}_{int(resampled)}.seg.nrrd"))
        assert storage.WriteData(seg)
        reloaded = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "reloaded " + name)
        assert storage.ReadData(reloaded)
        same = np.array_equal(mrml.segmentation_to_labels(reloaded, ct_geometry, labels.shape), labels)
        assert same != resampled, name
