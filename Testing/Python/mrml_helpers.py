"""Shared helper for the slicer-core tests: a scalar volume node holding a ``(z, y, x)`` array in a given
geometry, built the way a storage node would leave it (image data + IJKToRAS), without slicer.util."""
import numpy as np

from LiverTumorSegLib.volume import ImageGeometry


def add_volume_node(scene, array_zyx: np.ndarray, geometry: ImageGeometry, name: str = "CT"):
    """A ``vtkMRMLScalarVolumeNode`` in ``scene`` with ``array_zyx`` (numpy order z, y, x; VTK order x, y, z)
    and IJKToRAS = ``geometry.ijk_to_ras()``."""
    import vtk
    from vtk.util import numpy_support

    from LiverTumorSegLib import mrml

    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    image = vtk.vtkImageData()
    nz, ny, nx = array_zyx.shape
    image.SetDimensions(nx, ny, nz)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(
        np.ascontiguousarray(array_zyx).ravel(), deep=True,
        array_type=numpy_support.get_vtk_array_type(array_zyx.dtype)))
    node.SetAndObserveImageData(image)
    node.SetIJKToRASMatrix(mrml._numpy_to_matrix(geometry.ijk_to_ras()))
    return node


def read_volume_node(scene, path, name: str = "CT", keep_storage: bool = True, center: bool = False):
    """A ``vtkMRMLScalarVolumeNode`` in ``scene`` read from ``path`` by a ``vtkMRMLVolumeArchetypeStorageNode``
    (as Slicer's Add Data does); with ``keep_storage`` the node observes that storage node, so it knows its file;
    ``center``: Add Data's "Center volume" option (the origin moved so the volume is centred on 0)."""
    import slicer

    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    storage.SetCenterImage(bool(center))
    assert storage.ReadData(node), f"the storage node could not read {path}"
    if keep_storage:
        node.SetAndObserveStorageNodeID(storage.GetID())
    return node


def add_warp_transform_node(scene, name: str = "warp", moved_point=None):
    """A non-linear (thin-plate spline) ``vtkMRMLTransformNode`` in ``scene`` through the landmarks (0, 0, 0),
    (50, 0, 0), (0, 50, 0), (0, 0, 50) and, when given, ``moved_point = (source, target)`` (mm): without it the warp
    is the identity, still non-linear in kind."""
    import vtk

    warp = scene.AddNewNodeByClass("vtkMRMLTransformNode", name)
    tps = vtk.vtkThinPlateSplineTransform()
    source, target = vtk.vtkPoints(), vtk.vtkPoints()
    pairs = [((0, 0, 0),) * 2, ((50, 0, 0),) * 2, ((0, 50, 0),) * 2, ((0, 0, 50),) * 2]
    for a, b in pairs + ([moved_point] if moved_point else []):
        source.InsertNextPoint(*a)
        target.InsertNextPoint(*b)
    tps.SetSourceLandmarks(source)
    tps.SetTargetLandmarks(target)
    tps.SetBasisToR()
    warp.SetAndObserveTransformToParent(tps)
    return warp
