"""Property-based geometry round trips through MRML (slicer-core), as in ``test_geometry_properties.py``: random grids
(0.5-5 mm anisotropic spacing, any origin, the 48 signed axis permutations alone or turned up to 20 degrees). A
volume node's voxels (also under a linear transform) reach a segmentation node, Slicer's own labelmap export, the
tumor probability node, a ``.seg.nrrd`` (whole or cropped to its segments, stored in another axis order than the CT)
and Slicer's file reader at the same physical (RAS/LPS) places. Arrays are ``(z, y, x)``; geometry vectors
``(x, y, z)``, LPS, mm.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from LiverTumorSegLib import mrml
from LiverTumorSegLib.io import read_label_map, write_label_map, write_volume
from LiverTumorSegLib.volume import CTVolume, ImageGeometry

from inference_helpers import reoriented
from mrml_helpers import add_volume_node, read_volume_node
from test_geometry_properties import (PROPERTY_SETTINGS, STORAGE_ORDERS, assert_same_physical_image, geometries,
                                      rotation, shapes)

slicer = pytest.importorskip("slicer", reason="needs slicer-core (pip install slicer-core)")
vtk = pytest.importorskip("vtk")


def _random_labels(rng, shape) -> np.ndarray:
    """A 0/1/2 map: a random box of liver and one tumor voxel (possibly in the liver, possibly on the grid's edge)."""
    labels = np.zeros(shape, np.uint8)
    low = [int(rng.integers(0, n)) for n in shape]
    labels[tuple(slice(a, int(rng.integers(a + 1, n + 1))) for a, n in zip(low, shape))] = 1
    labels[tuple(int(rng.integers(0, n)) for n in shape)] = 2
    return labels


@settings(max_examples=15, **PROPERTY_SETTINGS)
@given(geometry=geometries(), shape=shapes, moved=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_property_volume_node_to_segmentation_and_slicers_labelmap_export_keep_every_voxels_place(geometry, shape,
                                                                                                 moved, seed):
    """Volume node (IJKToRAS of the grid; when ``moved``, under a linear transform turning it up to 40 degrees and
    shifting it up to 50 mm) -> CTVolume: the same voxels on the grid where the node shows (world); labels ->
    segmentation node (under the CT's transform) -> labels on the CT's grid: voxel for voxel; Slicer's own export
    of the segments to a labelmap node (what a user saves from the Segmentations module) and the tumor
    probability node: every voxel at the same physical place."""
    rng = np.random.default_rng(seed)
    scene = mrml.make_headless_scene()
    hu = rng.integers(-1000, 1000, shape).astype(np.int16)
    node = add_volume_node(scene, hu, geometry)
    to_world = np.eye(4)
    if moved:
        to_world[:3, :3] = rotation(rng.normal(size=3), rng.uniform(0.0, 40.0))
        to_world[:3, 3] = rng.uniform(-50.0, 50.0, 3)
        transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
        transform.SetMatrixTransformToParent(mrml._numpy_to_matrix(to_world))
        node.SetAndObserveTransformNodeID(transform.GetID())
    volume = mrml.ctvolume_from_volume_node(node)
    np.testing.assert_array_equal(volume.array, hu)
    assert volume.geometry.almost_equal(ImageGeometry.from_ijk_to_ras(to_world @ geometry.ijk_to_ras()), tol=1e-9)

    labels = _random_labels(rng, shape)
    segmentation = mrml.labels_to_segmentation_node(scene, labels, volume.geometry, reference_volume_node=node)
    assert segmentation.GetTransformNodeID() == node.GetTransformNodeID()
    np.testing.assert_array_equal(mrml.segmentation_to_labels(segmentation, volume.geometry, shape), labels)

    exported = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    ids = vtk.vtkStringArray()
    segmentation.GetSegmentation().GetSegmentIDs(ids)  # liver, then tumor: label values 1 and 2
    assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(segmentation, ids, exported, node)
    assert_same_physical_image(mrml.ctvolume_from_volume_node(exported), CTVolume(labels, volume.geometry),
                               atol_mm=1e-6)
    probability = (labels == 2).astype(np.float32)
    shown = mrml.probability_volume_node(scene, probability, volume.geometry, follow=node)
    assert_same_physical_image(mrml.ctvolume_from_volume_node(shown), CTVolume(probability, volume.geometry),
                               atol_mm=1e-6)
    scene.Clear(1)


@settings(max_examples=15, **PROPERTY_SETTINGS)
@given(geometry=geometries(), shape=st.tuples(*[st.integers(3, 7)] * 3), ct_order=st.sampled_from(STORAGE_ORDERS),
       label_order=st.sampled_from(STORAGE_ORDERS), cropped=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_property_a_seg_nrrd_in_another_axis_order_lands_on_the_ct_voxels(tmp_path_factory, geometry, shape, ct_order,
                                                                         label_order, cropped, seed):
    """A ``.seg.nrrd`` of the CT's grid stored in any of the 48 axis orders, whole (as ``segment`` writes it) or
    cropped to its segments' extent (as Slicer saves by default), read onto the CT: voxel for voxel; read alone,
    it is on the grid it was made on (the header's reference grid)."""
    rng = np.random.default_rng(seed)
    base = CTVolume(rng.integers(-1000, 1000, shape).astype(np.int16), geometry)
    ct, _ = reoriented(base, base.array, *ct_order)
    labels = np.zeros(ct.shape_zyx, np.uint8)
    labels[tuple(slice(1, max(2, n - 1)) for n in labels.shape)] = 1  # away from the edges: a crop is smaller
    labels[tuple(int(rng.integers(1, n - 1)) for n in labels.shape)] = 2
    stored, stored_labels = reoriented(CTVolume(labels, ct.geometry), labels, *label_order)
    path = tmp_path_factory.mktemp("seg") / "labels.seg.nrrd"
    if cropped:
        scene = mrml.make_headless_scene()
        node = mrml.labels_to_segmentation_node(scene, stored_labels, stored.geometry)
        storage = slicer.vtkMRMLSegmentationStorageNode()
        scene.AddNode(storage)
        storage.SetCropToMinimumExtent(True)
        storage.SetFileName(str(path))
        assert storage.WriteData(node)
        scene.Clear(1)
    else:
        mrml.write_seg_nrrd(path, stored_labels, stored.geometry)
    np.testing.assert_array_equal(read_label_map(path, reference=ct).array, labels)
    alone = read_label_map(path)
    np.testing.assert_array_equal(alone.array, stored_labels)
    assert alone.geometry.almost_equal(stored.geometry, tol=1e-4)


@settings(max_examples=12, **PROPERTY_SETTINGS)
@given(geometry=geometries(), shape=st.tuples(*[st.integers(2, 6)] * 3),
       suffix=st.sampled_from([".nii.gz", ".nrrd", ".mha"]), seed=st.integers(0, 2 ** 16))
def test_property_slicer_shows_the_files_written_here_where_this_library_has_them(tmp_path_factory, geometry, shape,
                                                                                  suffix, seed):
    """A CT and a label map written here, loaded by Slicer's file reader (Add Data): every voxel at the physical
    place this library has it (Slicer may store the voxels in another order, e.g. its slices reversed for a
    left-handed NIfTI grid), so the label map overlays the CT in Slicer as it does here."""
    rng = np.random.default_rng(seed)
    folder = tmp_path_factory.mktemp("slicer_reads")
    hu = rng.integers(-1000, 1000, shape).astype(np.int16)
    labels = _random_labels(rng, shape)
    scene = mrml.make_headless_scene()
    for name, array in (("ct", hu), ("labels", labels)):
        path = folder / f"{name}{suffix}"
        if name == "ct":
            write_volume(path, CTVolume(hu, geometry))
        else:
            write_label_map(path, labels, geometry)
        shown = mrml.ctvolume_from_volume_node(read_volume_node(scene, path, name))
        assert_same_physical_image(shown, CTVolume(array, geometry), atol_mm=1e-3)
    scene.Clear(1)
