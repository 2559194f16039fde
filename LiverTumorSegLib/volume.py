"""The in-memory CT volume and its geometry.

Axis order: ``CTVolume.array`` is ``(z, y, x)`` (numpy index ``[k, j, i]``). ``ImageGeometry`` stores
``spacing``, ``origin`` and ``direction`` in ``(x, y, z)`` = ``(i, j, k)`` order in the patient **LPS**
frame, millimetres, exactly as SimpleITK/ITK do. ``direction`` is a 3x3 matrix whose *columns* are the
LPS unit vectors of the i, j and k index axes.

Physical point of voxel index (i, j, k), LPS:  ``origin + direction @ (spacing * (i, j, k))``.
RAS (Slicer, NIfTI) is LPS with the first two coordinates negated.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from .errors import InputError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def _spacing_object_advice(spacing: Any) -> str:
    """For a CTVolume or ImageGeometry given where voxel sizes in ``(z, y, x)`` order are expected: what it is and
    which of its attributes to pass; "" for anything else (a geometry's ``spacing`` is ``(x, y, z)``, the reverse)."""
    if hasattr(spacing, "spacing_zyx"):
        return f"a {type(spacing).__name__}; pass its .spacing_zyx"
    if hasattr(spacing, "spacing") and hasattr(spacing, "direction"):
        return (f"an {type(spacing).__name__}; pass tuple(geometry.spacing[::-1]), its spacing in (z, y, x) order "
                f"(geometry.spacing is (x, y, z))")
    return ""


def checked_spacing(spacing: Any, count: int, what: str = "spacing_zyx") -> Tuple[float, ...]:
    """``spacing`` as ``count`` positive, finite floats (mm), else InputError naming ``what``. A negative spacing
    made post-processing record a lesion of -0.876 mL and drop it; zero or NaN ended in internal errors."""
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        given = (_spacing_object_advice(spacing) if what.endswith("_zyx") else "") or repr(spacing)
        raise InputError(f"{what} must be {count} voxel sizes in mm, got {given}.") from None
    if isinstance(spacing, str) or len(values) != count or not all(np.isfinite(v) and v > 0 for v in values):
        raise InputError(f"{what} must be {count} positive, finite voxel sizes in mm, got {spacing!r}.")
    return values


NUMERIC_KINDS = "biufc"
"""numpy dtype kinds of numeric arrays (bool, signed and unsigned integers, floats, complex)."""


def _image_library(obj: Any) -> str:
    """"nibabel" or "SimpleITK" when ``obj`` is an image object of that library, else "" (neither is imported)."""
    module = type(obj).__module__ or ""
    if module.startswith("nibabel") and hasattr(obj, "dataobj") and hasattr(obj, "affine"):
        return "nibabel"
    if module.startswith("SimpleITK") and type(obj).__name__ == "Image":
        return "SimpleITK"
    return ""


def image_object_advice(obj: Any, reader: str) -> str:
    """For a nibabel or SimpleITK image given where a ``(z, y, x)`` numpy array is expected: what it is and how to
    get the array, ``reader`` (e.g. ``"LiverTumorSegLib.io.read_volume(path)"``) first; "" for anything else.
    numpy made a nibabel image a 0-D object array and a SimpleITK image a flat 1-D array, which failed far later."""
    library = _image_library(obj)
    if library == "nibabel":
        return (f"a nibabel {type(obj).__name__}; read the file with {reader}, or take np.asarray(img.dataobj).T "
                f"(nibabel's arrays are (x, y, z); .T makes them (z, y, x)) with "
                f"ImageGeometry.from_ijk_to_ras(img.affine) as its geometry")
    if library == "SimpleITK":
        return (f"a SimpleITK {type(obj).__name__}; read the file with {reader}, or take "
                f"sitk.GetArrayFromImage(image) (already (z, y, x)) with ImageGeometry(spacing=image.GetSpacing(), "
                f"origin=image.GetOrigin(), direction=image.GetDirection()) as its geometry")
    return ""


def _geometry_advice(geometry: Any) -> str:
    """What ``geometry`` (not an ImageGeometry) is and how to get the ImageGeometry it stands for."""
    library = _image_library(geometry)
    if isinstance(geometry, CTVolume):
        return "a CTVolume; pass its geometry: ct.geometry"
    if library == "nibabel":
        return f"a nibabel {type(geometry).__name__}; pass ImageGeometry.from_ijk_to_ras(img.affine)"
    if library == "SimpleITK":
        return (f"a SimpleITK {type(geometry).__name__}; pass ImageGeometry(spacing=image.GetSpacing(), "
                f"origin=image.GetOrigin(), direction=image.GetDirection())")
    shape = np.shape(geometry) if isinstance(geometry, (np.ndarray, list, tuple)) else None
    if shape == (4, 4):
        return ("a 4 x 4 matrix; for a voxel-to-RAS affine (nibabel's img.affine, Slicer's IJKToRAS) pass "
                "ImageGeometry.from_ijk_to_ras(affine)")
    if shape == (3,):
        return (f"{geometry!r}, voxel sizes alone; pass ImageGeometry(spacing=(sx, sy, sz)) (mm, x y z order; origin "
                f"and direction default to 0 and the identity) or the CT's ct.geometry")
    return (f"{type(geometry).__name__}; pass the CT's ct.geometry (LiverTumorSegLib.io.read_volume) or build one "
            f"with ImageGeometry(spacing=(sx, sy, sz), origin=..., direction=...)")


def checked_geometry(geometry: Any, caller: str) -> "ImageGeometry":
    """``geometry`` when it is an :class:`ImageGeometry`, else TypeError naming ``caller`` (e.g. ``write_label_map``),
    what was passed and how to get the ImageGeometry (a CTVolume gave "'CTVolume' object has no attribute
    'ijk_to_ras'", a spacing tuple "'tuple' object has no attribute 'direction_matrix'")."""
    if isinstance(geometry, ImageGeometry):
        return geometry
    raise TypeError(f"{caller} needs an ImageGeometry (spacing, origin, direction) as geometry, got "
                    f"{_geometry_advice(geometry)}.")


@dataclass(frozen=True)
class ImageGeometry:
    """Voxel grid geometry. All vectors in ``(x, y, z)`` index order, LPS frame, millimetres."""

    spacing: Tuple[float, float, float]
    origin: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: Tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # row-major 3x3

    def __post_init__(self) -> None:
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        d = np.asarray(self.direction, dtype=float)
        if d.size != 9:
            # a 4 x 4 affine here failed with "cannot reshape array of size 16 into shape (3,3)"
            raise InputError(f"ImageGeometry.direction must be a 3 x 3 matrix (9 numbers, row-major; its columns are "
                             f"the LPS unit vectors of the i, j, k axes), got shape {d.shape}; for a 4 x 4 "
                             f"voxel-to-RAS affine (nibabel's img.affine) use ImageGeometry.from_ijk_to_ras(affine).")
        d = d.reshape(3, 3)
        object.__setattr__(self, "direction", tuple(d.ravel().tolist()))
        if len(self.spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in self.spacing):
            # a zero spacing made every volume 0 mL and every distance 0 mm without a word
            raise InputError(f"Voxel spacing must be three positive, finite sizes in mm (x, y, z); got "
                             f"{self.spacing}. Check the image header.")
        if len(self.origin) != 3 or not np.all(np.isfinite(self.origin)) or not np.all(np.isfinite(d)):
            raise InputError(f"The image origin {self.origin} or direction {self.direction} is not finite; check "
                             f"the image header.")

    @property
    def direction_matrix(self) -> np.ndarray:
        """3x3 array; column c is the LPS unit vector of index axis c (i, j, k)."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (1 mL = 1000 mm^3): the product of the spacings, which holds for
        unit, orthogonal axes only: others raise InputError (``validation.check_direction_axes``, as the readers,
        ``check_ct``, ``lesion_report`` and the writers do)."""
        from .validation import check_direction_axes

        # a direction with the spacing folded into its columns gave 0.001 mL for 0.0016 mL voxels
        check_direction_axes(self.direction_matrix, "ImageGeometry")
        return float(np.prod(self.spacing)) / 1000.0

    def ijk_to_lps(self) -> np.ndarray:
        """4x4 homogeneous matrix mapping (i, j, k, 1) to LPS millimetres."""
        m = np.eye(4)
        m[:3, :3] = self.direction_matrix @ np.diag(self.spacing)
        m[:3, 3] = self.origin
        return m

    def ijk_to_ras(self) -> np.ndarray:
        """4x4 matrix mapping (i, j, k, 1) to RAS mm: Slicer's IJKToRAS and the NIfTI/nibabel affine."""
        m = self.ijk_to_lps()
        m[:3, :] = LPS_TO_RAS @ m[:3, :]
        return m

    @classmethod
    def from_ijk_to_ras(cls, affine: np.ndarray) -> "ImageGeometry":
        """Build from a 4x4 IJK-to-RAS matrix (nibabel affine / Slicer IJKToRAS)."""
        affine = np.asarray(affine, dtype=float)
        if affine.shape != (4, 4):
            # a 3 x 3 matrix failed with "IndexError: index 3 is out of bounds"
            raise InputError(f"ImageGeometry.from_ijk_to_ras needs a 4 x 4 voxel-to-RAS affine (nibabel's img.affine, "
                             f"Slicer's IJKToRAS), got shape {affine.shape}; a 3 x 3 direction matrix goes into "
                             f"ImageGeometry(spacing=(sx, sy, sz), origin=..., direction=...) (LPS, unit columns).")
        lps = LPS_TO_RAS @ affine[:3, :]
        spacing = np.linalg.norm(lps[:3, :3], axis=0)
        if np.any(spacing <= 0):
            raise ValueError("Affine has a zero-length axis; the voxel spacing would be 0 mm.")
        return cls(spacing=tuple(spacing), origin=tuple(lps[:3, 3]), direction=tuple((lps[:3, :3] / spacing).ravel()))

    def index_to_lps(self, ijk: Sequence[float]) -> np.ndarray:
        """LPS mm of a continuous index given in (i, j, k) = (x, y, z) order."""
        return self.ijk_to_lps()[:3, :3] @ np.asarray(ijk, dtype=float) + np.asarray(self.origin)

    def slice_centre_s_mm(self, k: float, shape_zyx: Sequence[int]) -> float:
        """The S (LPS z) position, mm, of the centre of slice ``k`` of the array's slowest axis, for an array of
        ``shape_zyx``: what a caption gives (as the report's ``axial_position_s_mm`` and Slicer's slice slider). It
        replaced ``slice_s_mm``, the S of the slice's first voxel, which read 35.9 mm for a slice centred at 10.1 mm
        of a CT tilted 15 degrees (the preview audit)."""
        return float(self.index_to_lps(((int(shape_zyx[2]) - 1) / 2.0, (int(shape_zyx[1]) - 1) / 2.0, float(k)))[2])

    def index_to_ras(self, ijk: Sequence[float]) -> np.ndarray:
        """RAS mm of a continuous index given in (i, j, k) = (x, y, z) order."""
        return LPS_TO_RAS @ self.index_to_lps(ijk)

    def almost_equal(self, other: "ImageGeometry", tol: float = 1e-4) -> bool:
        """True when spacing, origin (mm) and direction agree within ``tol``."""
        return (np.allclose(self.spacing, other.spacing, atol=tol)
                and np.allclose(self.origin, other.origin, atol=tol)
                and np.allclose(self.direction, other.direction, atol=tol))

    def to_dict(self) -> Dict[str, Any]:
        return {"spacing": list(self.spacing), "origin": list(self.origin), "direction": list(self.direction)}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ImageGeometry":
        return cls(spacing=tuple(d["spacing"]), origin=tuple(d["origin"]), direction=tuple(d["direction"]))


PLACEMENT_META_KEYS = ("nifti_header_transforms", "nifti_orientation_unknown")
""":attr:`CTVolume.meta` keys that say how the file placed the grid it was read on (a NIfTI's sform and qform as
written, a NIfTI without orientation; the NIfTI writers keep them, ``nifti_write_options``). They are true of that grid
only: a volume on another grid (reoriented, resampled, cropped) carried them on, and a NIfTI written with them was
placed as the file placed the original (a canonicalized CT's label map mirrored left-right and front-back)."""


ORIENTATION_ASSUMED_KEY = "orientation_assumed"
""":attr:`CTVolume.meta` key set on a volume whose file does not say which patient sides its axes run to (a NRRD
without a ``space`` field, which ITK, 3D Slicer and this tool read as LPS), so that pictures draw no side letters
(:func:`sides_unknown`). Unlike :data:`PLACEMENT_META_KEYS` it stays true on another grid of the same scan."""


def sides_unknown(volume: Any) -> bool:
    """Whether the patient sides of ``volume``'s grid are a guess: a NIfTI without sform and qform, or a file without
    an anatomical space (:data:`ORIENTATION_ASSUMED_KEY`). Pictures then mark no R/L/A/P: they would draw a guess as
    a fact (a NRRD without 'space' stored right to left came out mirrored with the letters drawn)."""
    meta = getattr(volume, "meta", None) or {}
    return bool(meta.get(PLACEMENT_META_KEYS[1]) or meta.get(ORIENTATION_ASSUMED_KEY))


def meta_for_another_grid(meta: Dict[str, Any]) -> Dict[str, Any]:
    """A copy of ``meta`` for a volume on another grid than the one it was read on: without
    :data:`PLACEMENT_META_KEYS`."""
    return {key: value for key, value in meta.items() if key not in PLACEMENT_META_KEYS}


@dataclass
class CTVolume:
    """A 3D scalar image and its geometry.

    ``array``: ``(z, y, x)`` numpy array. For CT read by :mod:`LiverTumorSegLib.io` the values are
    Hounsfield units (rescale slope/intercept already applied), dtype int16 or float32.
    ``geometry``: see :class:`ImageGeometry` (``(x, y, z)`` order, LPS).
    ``source``: where it came from (a path), for messages. ``meta``: free-form extra facts.
    """

    array: np.ndarray
    geometry: ImageGeometry
    source: str = ""
    meta: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a nested list or another array-like becomes numpy here, so every later step finds .shape and .dtype
        # (before, a list got as far as preprocessing and failed there with an AttributeError); an image object or
        # anything else that is not numbers is refused here
        self.array = _checked_voxels(self.array)
        if not isinstance(self.geometry, ImageGeometry):
            raise TypeError(f"CTVolume.geometry must be an ImageGeometry (spacing, origin, direction), got "
                            f"{type(self.geometry).__name__}; read files with LiverTumorSegLib.io.read_volume.")

    @property
    def shape_zyx(self) -> Tuple[int, int, int]:
        """Array shape ``(z, y, x)`` in voxels (``geometry`` holds no size)."""
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing_zyx(self) -> Tuple[float, float, float]:
        """Spacing in array axis order ``(z, y, x)``, mm."""
        sx, sy, sz = self.geometry.spacing
        return (sz, sy, sx)

    def with_array(self, array: np.ndarray, source: Optional[str] = None) -> "CTVolume":
        """Same geometry, new voxels (e.g. a label map for this CT). Shape must match."""
        if tuple(array.shape) != tuple(self.array.shape):
            raise ValueError(f"shape {array.shape} does not match the volume's {self.array.shape} (z, y, x)")
        return CTVolume(array=array, geometry=self.geometry, source=source or self.source, meta=dict(self.meta))


def numeric_array(array: Any, expected: str, reader: str, not_numbers_advice: str = "") -> np.ndarray:
    """``array`` as a numeric numpy array (a numpy array is returned as it is), else TypeError starting with
    ``expected`` (e.g. "CTVolume.array must be a numeric numpy array in (z, y, x) order") and saying what was
    passed: a nibabel or SimpleITK image with the way to its array (``reader`` first, :func:`image_object_advice`),
    something numpy cannot make an array of (a ragged list), or an array that is not numbers (then
    ``not_numbers_advice`` is added)."""
    advice = image_object_advice(array, reader)
    if advice:
        raise TypeError(f"{expected}, got {advice}.")
    given = type(array).__name__
    if not isinstance(array, np.ndarray):
        try:
            array = np.asarray(array)
        except (TypeError, ValueError) as exc:  # e.g. a ragged nested list
            raise TypeError(f"{expected}, got {given}, which numpy cannot make into an array ({exc}).") from None
    if array.dtype.kind not in NUMERIC_KINDS:
        raise TypeError(f"{expected}, got {given} (to numpy: dtype {array.dtype}, shape {array.shape}), not "
                        f"numbers{not_numbers_advice}.")
    return array


def _checked_voxels(array: Any) -> np.ndarray:
    """``array`` as a numeric numpy array, else TypeError saying what was passed and how to get the array: numpy
    made a nibabel image a 0-D object array (refused much later as "0D (shape ())") and a SimpleITK image a flat
    1-D int64 array."""
    return numeric_array(array, "CTVolume.array must be a numeric numpy array in (z, y, x) order",
                         "LiverTumorSegLib.io.read_volume(path), which gives the CTVolume",
                         "; read image files with LiverTumorSegLib.io.read_volume(path), or pass the voxel values as "
                         "a numeric array (e.g. np.asarray(values, dtype=np.float32))")
