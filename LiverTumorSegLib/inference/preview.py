"""Preview PNG of a segmentation: an axial and a coronal CT slice with liver (green) and tumor (red) overlays.

The slices are shown in radiological convention (canonical orientation: image left = patient right); the
axial slice is the one with the most tumor (else the most liver), the coronal one through its centre. Each
lesion on a panel carries its number from the report; the axial title says how many of them that slice shows.
"""
from pathlib import Path
from typing import Any, Tuple

import numpy as np

from ..fileutil import atomic_output, picture_text_as_given
from ..volume import CTVolume

LIVER_RGBA = (0.1, 0.85, 0.2, 0.35)
TUMOR_RGBA = (0.95, 0.1, 0.1, 0.6)


def pick_preview_slices(labels_zyx: np.ndarray) -> Tuple[int, int]:
    """``(z, y)`` indices: axial slice with most tumor (else most liver, else middle), coronal through it."""
    for value in (2, 1):
        per_slice = (labels_zyx == value).sum(axis=(1, 2))
        if per_slice.max() > 0:
            z = int(np.argmax(per_slice))
            rows = np.nonzero((labels_zyx[z] >= value).any(axis=1))[0]
            return z, int(rows[len(rows) // 2])
    return labels_zyx.shape[0] // 2, labels_zyx.shape[1] // 2


def preview_positions_mm(canonical: CTVolume, z: int, y: int) -> Tuple[float, float]:
    """``(S mm of axial slice z, A mm of coronal row y)`` of a canonical volume (RAS mm, at the slice's or the row's
    centre): the titles give these, as the report's ``axial_position_s_mm`` and Slicer's slice sliders do. The
    canonical array's indices (the titles' numbers until an audit) are no slice or row of the user's file when it
    is stored in another order."""
    nz, _, nx = canonical.shape_zyx
    s_mm = canonical.geometry.slice_centre_s_mm(z, canonical.shape_zyx)
    a_mm = float(canonical.geometry.index_to_ras(((nx - 1) / 2.0, float(y), (nz - 1) / 2.0))[1])
    return s_mm, a_mm


PREVIEW_TILT_DEGREES = 5.0
"""A panel whose plane is turned more than this from the true axial (or coronal) plane is titled as tilted: its
position in mm holds at its centre only."""


def plane_tilts_degrees(direction: np.ndarray) -> Tuple[float, float]:
    """``(axial panel's tilt, coronal panel's tilt)`` in degrees of a canonical grid's ``direction`` (3 x 3, columns
    the i, j, k axes in LPS): the angles between the normal of a slice (the i-j plane) and S, and between the
    normal of a row (the i-k plane) and A."""
    from ..validation import slice_tilt_degrees  # the axial panel: the slices' tilt, as the warnings measure it

    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    normal = np.cross(d[:, 0], d[:, 2])
    cosine = abs(float(normal[1])) / max(float(np.linalg.norm(normal)), 1e-12)
    return slice_tilt_degrees(d), float(np.degrees(np.arccos(np.clip(cosine, 0.0, 1.0))))


def panel_titles(canonical: CTVolume, z: int, y: int) -> Tuple[str, str]:
    """The axial and coronal panels' first title lines for slice ``z`` and row ``y`` of a canonical volume: their
    S and A positions (:func:`preview_positions_mm`), and on a grid whose panels are tilted more than
    :data:`PREVIEW_TILT_DEGREES` the tilt, the position being the panel's centre's: a CT tilted 15 degrees showed
    'axial at S 338.9 mm' for a lesion the report put at S 322.6 mm, S varying by 39 mm across that slice (the
    outputs audit)."""
    axial_s, coronal_a = preview_positions_mm(canonical, z, y)
    axial_tilt, coronal_tilt = plane_tilts_degrees(canonical.geometry.direction_matrix)
    axial = (f"slice tilted {axial_tilt:.0f} deg from axial, S {axial_s:.1f} mm at its centre"
             if axial_tilt > PREVIEW_TILT_DEGREES else f"axial at S {axial_s:.1f} mm")
    coronal = (f"row tilted {coronal_tilt:.0f} deg from coronal, A {coronal_a:.1f} mm at its centre"
               if coronal_tilt > PREVIEW_TILT_DEGREES else f"coronal at A {coronal_a:.1f} mm")
    return axial, coronal


def overlay_rgb(hu_2d: np.ndarray, labels_2d: np.ndarray, level: float = 40.0, width: float = 400.0) -> np.ndarray:
    """``(H, W, 3)`` float32 image in [0, 1]: HU windowed to grey, liver and tumor alpha-blended on top."""
    grey = np.clip((hu_2d.astype(np.float32) - (level - width / 2.0)) / width, 0.0, 1.0)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    for value, rgba in ((1, LIVER_RGBA), (2, TUMOR_RGBA)):
        mask = labels_2d == value
        alpha = rgba[3]
        rgb[mask] = (1.0 - alpha) * rgb[mask] + alpha * np.asarray(rgba[:3], dtype=np.float32)
    return rgb


PANELS_TOP_UNDER_BANNER = 0.88
"""The top of the panels (a fraction of the figure's height) when the two-line orientation banner is drawn above
them: with the panels up to the top, it covered the axial panel's title (its slice position)."""


@picture_text_as_given()
def save_overlay_preview(path: Any, volume: CTVolume, labels_zyx: np.ndarray, overwrite: bool = False) -> Path:
    """Write the two-panel preview PNG for ``volume`` and its ``labels_zyx`` (input geometry); atomic.

    Pixels are shown at their physical aspect ratio (from the spacing), with patient-side letters
    (R/L, A/P, S/I) on the image edges (none, and a red note instead, for a NIfTI without orientation: its
    sides are not known) and a legend naming the overlay colours. Rendered with a bare
    Agg ``Figure`` so it never switches pyplot's backend (the Slicer GUI keeps its own).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from ..orientation import canonicalize

    from .lesion_report import lesion_components

    canonical, reorientation = canonicalize(volume)
    labels = reorientation.to_canonical(labels_zyx)
    ids, count = lesion_components(labels_zyx, volume.geometry)  # numbered as in the report
    ids = reorientation.to_canonical(ids)  # also without lesions: indexed below on the canonical grid
    z, y = pick_preview_slices(labels)
    sz, sy, sx = canonical.spacing_zyx
    axial = overlay_rgb(canonical.array[z], labels[z])
    coronal = overlay_rgb(canonical.array[:, y, :][::-1], labels[:, y, :][::-1])  # superior at the top
    coronal_aspect, stretch = coronal_display_aspect(canonical.shape_zyx, canonical.spacing_zyx)
    axial_title, coronal_title = panel_titles(canonical, z, y)
    if round(stretch, 1) > 1.0:  # a stretch of 1.02 was announced as "stretched x1.0"
        coronal_title += f"\n{canonical.shape_zyx[0]} slices, z stretched x{stretch:.1f} to be visible"
    axial_ids, coronal_ids = ids[z], ids[:, y, :][::-1]
    if count:
        shown = len(np.setdiff1d(np.unique(axial_ids), [0]))
        axial_title += f"\nlesions numbered as in the report; {shown} of {count} on this slice"
    from ..volume import sides_unknown

    unknown = sides_unknown(volume)  # no side letters then: they would be a guess drawn as a fact
    fig = Figure(figsize=(10, 5.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    panels = ((axial, sy / sx, axial_title, ("A", "P", "R", "L"), axial_ids),
              (coronal, coronal_aspect, coronal_title, ("S", "I", "R", "L"), coronal_ids))
    for ax, (image, aspect, title, (top, bottom, left, right), panel_ids) in zip(axes, panels):
        ax.imshow(image, aspect=aspect, interpolation="nearest")
        for number, (row, col) in lesion_label_positions(panel_ids):
            ax.text(col, row, str(number), color="white", fontsize=10, fontweight="bold", ha="center",
                    va="center", bbox=dict(boxstyle="round,pad=0.1", facecolor="black", alpha=0.5, lw=0))
        ax.set_title(title)
        ax.axis("off")
        if unknown:
            continue
        style = dict(transform=ax.transAxes, color="yellow", fontsize=11, fontweight="bold")
        ax.text(0.5, 0.99, top, ha="center", va="top", **style)
        ax.text(0.5, 0.01, bottom, ha="center", va="bottom", **style)
        ax.text(0.01, 0.5, left, ha="left", va="center", **style)
        ax.text(0.99, 0.5, right, ha="right", va="center", **style)
    if unknown:  # two lines, above the panels' titles (one line was wider than the figure and lay over them)
        fig.suptitle("ORIENTATION UNKNOWN (a NIfTI without sform/qform, or a NRRD without space):\nleft/right and "
                     "front/back of this picture are not known", color="red", fontsize=11, fontweight="bold")
    fig.legend(handles=[Patch(color=LIVER_RGBA[:3], label="liver (label 1)"),
                        Patch(color=TUMOR_RGBA[:3], label="tumor (label 2)")],
               loc="lower center", ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, PANELS_TOP_UNDER_BANNER if unknown else 1))
    path = Path(path)
    with atomic_output(path, overwrite) as tmp:
        # bbox "tight": titles and legend are never cut off, whatever the panels' shapes
        fig.savefig(str(tmp), format="png", dpi=80, bbox_inches="tight", pad_inches=0.1)
    return path


def lesion_label_positions(ids_2d: np.ndarray) -> list:
    """``[(lesion number, (row, col))]``: where to write each lesion's number on a 2D slice of lesion ids, the
    pixel of the lesion nearest its centroid on that slice (inside the lesion even when it is curved)."""
    out = []
    for number in np.setdiff1d(np.unique(ids_2d), [0]):
        rows, cols = np.nonzero(ids_2d == number)
        centre = np.array([rows.mean(), cols.mean()])
        nearest = int(np.argmin((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2))
        out.append((int(number), (int(rows[nearest]), int(cols[nearest]))))
    return out


MIN_CORONAL_HEIGHT = 0.25  # a coronal panel is shown at least this tall relative to its width


def coronal_display_aspect(shape_zyx, spacing_zyx, min_height: float = MIN_CORONAL_HEIGHT) -> Tuple[float, float]:
    """``(aspect, stretch)`` for showing a coronal slice ``(z, x)``: ``aspect`` = displayed pixel height / width.

    The physical aspect is ``sz / sx``; a thin volume (a few slices) would then be a strip a few pixels high,
    so z is stretched until the panel is at least ``min_height`` x its width; ``stretch`` (>= 1) says by how
    much (1.0 = true proportions), for the panel's title.
    """
    nz, _, nx = (int(n) for n in shape_zyx)
    sz, _, sx = (float(s) for s in spacing_zyx)
    physical = sz / sx
    needed = min_height * nx / max(nz, 1)
    if physical >= needed:
        return physical, 1.0
    return needed, needed / physical
