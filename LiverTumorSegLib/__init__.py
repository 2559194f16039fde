"""LiverTumorSegLib: headless liver and liver-tumor segmentation for abdominal CT.

Importable without Slicer, Qt or a GPU. Heavy modules (torch, monai) are imported only by the
submodules that need them, so ``import LiverTumorSegLib`` stays cheap.

Conventions used everywhere in this package
-------------------------------------------
* Voxel arrays are numpy arrays in ``(z, y, x)`` order, i.e. ``array[k, j, i]`` (the order SimpleITK's
  ``GetArrayFromImage`` and Slicer's ``arrayFromVolume`` return).
* Geometry (spacing, origin, direction) is given in ``(x, y, z)`` = ``(i, j, k)`` index order, in
  millimetres, in the patient **LPS** frame (the DICOM/ITK convention). Slicer's RAS is obtained by
  negating the first two physical coordinates (see :mod:`LiverTumorSegLib.volume`).
* Labels: 0 background, 1 liver, 2 liver tumor.
"""

__version__ = "0.6.24"

LABELS = {0: "background", 1: "liver", 2: "tumor"}
