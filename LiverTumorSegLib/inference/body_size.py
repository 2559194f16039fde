"""Body-size scaling: a CT of a body much smaller than the bodies a model was trained on (a child) is shown to the
network enlarged in-plane, so that its anatomy appears at a size the network has seen.

A 2.5D network learns the size of a liver in millimetres as well as its look: the bundled default was trained on three
adults, two of whose bodies measure 324.6 and 341.3 mm across (area-equivalent diameter, :func:`body_diameter_mm`, as
the package records them; the third's is cut by the image), v3 (the default until 28 Nov 2026) with a zoom
augmentation of 0.6-1.6, v10 with 0.6-2.0. The robustness benchmark shows where that stops holding, with the anatomy
shown smaller than it is (the header's pixel spacing scaled; ``benchmarks/robustness.py`` rows ``spacing-30`` ..
``spacing-60``, v3, seed 0, 27 Nov 2026, without this scaling): mean liver / synthetic-tumor Dice 0.982 /
0.781 as scanned, 0.981 / 0.736 at 0.7x, 0.973 / 0.682 at 0.6x, 0.954 / 0.533 at 0.5x and 0.872 / 0.370 at 0.4x (a
toddler's size).

So when a package records the body diameters of its training CTs (:data:`PACKAGE_KEY`; the bundled default does)
and the CT's body is smaller than :data:`SMALL_FRACTION` of the smallest of them, the network is given the CT with
its in-plane pixel spacing multiplied by ``TARGET_FRACTION x smallest / diameter`` (at most
:data:`MAX_IN_PLANE_SCALE`): the network grid is finer by that factor, so the anatomy reaches the network at about
that size. Only the network sees the enlarged grid; its labels come back on the CT's own voxels, and
post-processing, volumes and lengths use the CT's true spacing. The slice spacing is not changed (the 2.5D
neighbours are chosen in true mm). A body cut by the image's side or by a round field of view has no measurable
size and is never scaled; nor is a CT segmented with a package that records no training diameters (a package
trained on children would be harmed by an adult's scale).

Not measured on a real child's CT (none is in the data this project may use): the benchmark shows adult anatomy
made smaller, and a child's proportions differ (a larger liver for the body). The report records what was measured
and the factor (``body_size``), and a warning says when the CT was scaled; ``--no-body-size-scaling`` turns it off.
"""
from dataclasses import replace
from typing import Any, Dict, Optional

import numpy as np

from ..validation import PADDING_BELOW_HU
from ..volume import CTVolume, ImageGeometry

BODY_HU = -500.0
"""Voxels above this (HU) are body (soft tissue, fat at about -100, bone); air and lung lie below."""
PACKAGE_KEY = "training_body_diameter_mm"
"""The package metadata key: ``{case name: body diameter in mm (:func:`body_diameter_mm`) or null where not
measurable}`` of the CTs the package was trained on: ``train`` records it (measured on each training CT as read,
when the slice cache is built), and ``scripts/record_training_body_size.py`` adds it to a package trained before
(measured on the CT files)."""
SMALL_FRACTION = 0.75
"""Bodies smaller than this share of the smallest training body are scaled: the benchmark's 0.7x rows lose nothing
(0.001 liver Dice), its 0.6x rows lose 0.009 liver and 0.10 tumor Dice. For the bundled default (smallest 325 mm),
bodies under 243 mm: a child, or a very thin adult."""
TARGET_FRACTION = 0.9
"""A scaled body is shown at this share of the smallest training body (the bundled default: 292 mm): inside the range
where the benchmark loses nothing, and on the small side since a child's liver is larger for its body than an
adult's."""
MAX_IN_PLANE_SCALE = 3.0
"""The largest enlargement (for the bundled default: bodies under 97 mm): the network grid is then 0.5 mm."""
MIN_BODY_AREA_MM2 = 2000.0
"""A slice's largest body part smaller than this (mm^2; 45 x 45 mm) is not a trunk (a hand, a cable): skipped."""
THIN_STRUCTURE_RADIUS_MM = 4.0
"""What a disc of this radius (mm) cannot fit in is parted from the body before its area is taken: the CT table's
shells and a mattress cover, which touch the body of a patient lying on them (read every second pixel, a disc of 2
pixels at 1.6-2 mm: layers up to 4 pixels thick go). Measured at full resolution: the 20-slice contrast CT's table
shells are 3-6 mm thick, the 3-slice GE CT's table 4 mm and the cover under its body, which touches it, 2.4 mm. An
arm lying against the trunk stays: the 20-slice CT's arm first comes off at 6 mm (its last slice read, 324.6 ->
313.0 mm). The lungs and bowel gas stay inside however thin their wall (the air the body encloses is kept)."""
MAX_CUT_EDGE_FRACTION = 0.05
"""A slice's body counts as cut when more than this share of its edge lies on the image's edge or beside padding.
The 3-slice GE CT's round field of view grazes its body along 1.2-1.3 % of its edge (its three slices), the 20-slice
CT's (padded with -1024, :func:`_round_air_padding`) its arms along 1.7-4.2 % (the 16 slices read, nearest below
this); the abdomen-pelvis CT's image edge cuts its body along 3.3-20.4 % in 12 of the 16 slices read (in 8 of them
more than this; it is the bundled sample CT), and its 30-slice crop in Testing/Data (``example_ct_sm``) along 3.8 %
in its first slice read."""
MIN_FOV_BORDER_PIXELS = 32
"""Fewer pixels than this (read every second pixel) on the border of a plane's corner-connected lowest-value region
are no field of view's circle: the 20-slice CT's round field of view padded with -1024 has 725-776 in each slice
read; in the two 3 mm sample CTs (noisy air) the lowest value holds 1-4 pixels at a corner (the first three slices
read of each), or none."""
MAX_FOV_CIRCLE_DISTANCE_PIXELS = 1.0
"""A round field of view's border lies within this median distance (pixels read) of the circle fitted to it: the
20-slice CT 0.43-0.54 (its air clipped to -1024 in places joins the padding), the 3-slice GE CT with its -3024
padding written as -1024 0.38-0.42. Air set to -1024 below -500 (a CT so prepared) borders the body: its median
distance is 1.81 (``example_ct_sm``), 6.02 (3-slice) and 10.26 (20-slice) pixels."""
MIN_FOV_AIR_FRACTION = 0.25
"""At least this share of the pixels just inside a field of view's circle is air (below :data:`BODY_HU`): 0.92 in
the 20-slice CT, 0.97 in the 3-slice one. A round body in air set to one value has body all along its border (0): it
is no field of view. A body bordering over three quarters of the circle is not seen as cut by it."""
MAX_FILL_LINE_DISTANCE_PIXELS = 1.0
"""A resampling's fill written with an air value (-1024) borders the rest of a slice along a straight line (where the
slice leaves the old grid's box): its border lies within this median distance (pixels read) of the line fitted to
it. The 20-slice CT resampled onto a grid turned 30 degrees about the left-right axis with a fill of -1024
(``benchmarks/robustness.py`` row ``regrid_fill-1024``): 0.0-0.83 in the 16 slices read, 1.08 and 1.34 in two end
slices where the fill joins air outside the body clipped to -1024 (those two read as uncut); the 3 mm CTs 0.0. The
same CTs as scanned: the lowest value's regions at the slices' edge (a round field of view padded with -1024, noisy
air) lie 4.1-6.8 pixels from a line. Air a CT has had set to one value borders the body's curved surface."""
HOUGH_VOTERS = 256
"""At most this many border pixels (every n-th) vote for the robust line of :func:`_dominant_line`, which then takes
all that lie near it: with every pixel voting, ``find_straight_air_fill`` took 0.22-0.28 s for the shared 20-slice
CT (512 x 512, as stored or clipped at -1024; one core), 0.15 s so (0.06 s before the robust line was looked for)."""
MAX_CUT_FRACTION = 0.25
"""When more than this share of the slices with a body have it cut, the size is not measured (the uncut slices
could be the small ones)."""
SAMPLED_SLICES = 16
"""Axial slices read, evenly spaced (each at every second pixel): the 20-slice 512 x 512 CT is measured in
0.06 s on 2 CPU cores (0.05 s before a touching table and a field of view padded with -1024 were looked for)."""
DIAMETER_PERCENTILE = 75.0
"""The body's diameter is this percentile of the slices' diameters: the trunk, not the neck, legs or a slice at the
scan's end, in a scan that reaches beyond the abdomen."""


def body_diameter_mm(hu_zyx: np.ndarray, geometry: ImageGeometry, outside_scan_zyx: Optional[np.ndarray] = None
                     ) -> Dict[str, Any]:
    """The body's size in a CT ``hu_zyx`` (``(z, y, x)`` HU on ``geometry``): ``{"diameter_mm": float or None,
    "slices_measured": int, "slices_cut": int}``. Each of up to :data:`SAMPLED_SLICES` axial slices gives the
    area-equivalent diameter ``2 sqrt(area / pi)`` (mm; the "effective diameter" of CT dosimetry, AAPM Report 204,
    from the area instead of AP x lateral) of its largest part above :data:`BODY_HU`, holes filled, less a table or
    cover that touches it through a layer thinner than :data:`THIN_STRUCTURE_RADIUS_MM` allows (the 3-slice GE CT:
    341.3 mm, 341.8 with the cover under its body counted; the 20-slice CT 324.6, was 324.7). Arms lying
    against the trunk add to the area, not to it twice as to a left-right width (the 20-slice contrast CT: 313.8-326.5
    mm per slice, 324.6 mm as its percentile, against 414-486 mm left to right). A part whose edge lies on the
    slice's edge or beside padding (below :data:`PADDING_BELOW_HU`, or a round field of view padded with the value of
    air, :func:`_round_air_padding`) along more than :data:`MAX_CUT_EDGE_FRACTION` of its edge is cut and counts in
    ``slices_cut``. ``diameter_mm`` (the :data:`DIAMETER_PERCENTILE` percentile of the measured slices) is None when
    no slice has a body or too many are cut (:data:`MAX_CUT_FRACTION`). ``outside_scan_zyx`` (bool, same grid): more
    voxels that count as padding, a resampling's fill (:mod:`.resampling_fill`): the body it cuts is cut."""
    from ..metrics.recist import axial_axis_zyx

    hu = np.asarray(hu_zyx)
    axis = axial_axis_zyx(geometry)
    pixel_mm2 = _pixel_area_mm2(geometry, axis)
    pixel_spacing_mm = tuple(2.0 * geometry.spacing[i] for i in _in_plane_axes_xyz(axis))  # (rows, columns) read
    rows, columns = _every_second_pixel(hu.shape, geometry, axis)
    diameters, cut = [], 0
    for k in np.unique(np.linspace(0, hu.shape[axis] - 1, min(SAMPLED_SLICES, hu.shape[axis])).round().astype(int)):
        plane = np.take(hu, int(k), axis=axis)[rows, columns]  # every second pixel: 4x fewer to label and fill
        part = _body_part(plane, pixel_spacing_mm, pixel_mm2)
        if part is None:
            continue
        padding = outside_scan_pixels(plane, pixel_spacing_mm)
        if outside_scan_zyx is not None:
            padding = padding | np.take(outside_scan_zyx, int(k), axis=axis)[rows, columns]
        if _cut_edge_fraction(part, padding) > MAX_CUT_EDGE_FRACTION:
            cut += 1
            continue
        diameters.append(2.0 * float(np.sqrt(part.sum() * pixel_mm2 / np.pi)))
    measured = len(diameters)
    if measured == 0 or cut > MAX_CUT_FRACTION * (measured + cut):
        return {"diameter_mm": None, "slices_measured": measured, "slices_cut": cut}
    return {"diameter_mm": round(float(np.percentile(diameters, DIAMETER_PERCENTILE)), 1),
            "slices_measured": measured, "slices_cut": cut}


def _body_part(plane: np.ndarray, pixel_spacing_mm: tuple, pixel_mm2: float) -> Optional[np.ndarray]:
    """The body in one axial ``plane`` (2D HU, read every second pixel; ``pixel_spacing_mm`` its (row, column)
    pixel size): the largest part above :data:`BODY_HU` with its holes filled, less what only a thin structure
    joined to it (:func:`_without_thin_attachments`); None when that part is under :data:`MIN_BODY_AREA_MM2`."""
    from scipy import ndimage

    parts, n = ndimage.label(plane > BODY_HU)
    if n == 0:
        return None
    sizes = np.bincount(parts.ravel())[1:]
    if sizes.max() * pixel_mm2 < MIN_BODY_AREA_MM2:
        return None
    label = int(np.argmax(sizes)) + 1
    box = ndimage.find_objects(parts, max_label=label)[label - 1]  # the work is done on the part's bounding box
    kept = _without_thin_attachments(parts[box] == label, pixel_spacing_mm)
    if kept is None or kept.sum() * pixel_mm2 < MIN_BODY_AREA_MM2:
        return None
    part = np.zeros(plane.shape, dtype=bool)
    part[box] = kept
    return part


def _without_thin_attachments(part: np.ndarray, pixel_spacing_mm: tuple) -> Optional[np.ndarray]:
    """``part`` (a 2D mask, ``pixel_spacing_mm`` its (row, column) pixel size) with its holes filled, less what a
    morphological opening by a disc of radius :data:`THIN_STRUCTURE_RADIUS_MM` parts from it (a table, a mattress
    cover, touching the body): the largest part of what the opening keeps with the air the whole ``part`` enclosed
    (lungs, bowel gas), and the walls the opening took from around that air (``part`` within two radii of it: a thin
    child's chest wall), holes filled. None when nothing thicker than the disc is left. Pixels larger than the disc's
    radius (a 3 mm CT read every second pixel) cannot show such a layer: the part is kept whole, its holes filled."""
    from scipy import ndimage

    filled = ndimage.binary_fill_holes(part)
    disc = _disc(THIN_STRUCTURE_RADIUS_MM, pixel_spacing_mm)
    if disc.size == 1:
        return filled
    enclosed_air = filled & ~part
    kept, n = ndimage.label(ndimage.binary_opening(part, disc) | enclosed_air)
    if n == 0:
        return None
    kept = kept == int(np.argmax(np.bincount(kept.ravel())[1:])) + 1
    walls = part & ndimage.binary_dilation(kept & enclosed_air, disc, iterations=2)
    return ndimage.binary_fill_holes(kept | walls)


def _disc(radius_mm: float, pixel_spacing_mm: tuple) -> np.ndarray:
    """A 2D disc of ``radius_mm`` (a boolean structuring element on pixels of ``pixel_spacing_mm``, (rows,
    columns)): the pixels whose centres lie within the radius of the centre pixel's."""
    rows_mm, columns_mm = (float(s) for s in pixel_spacing_mm)
    reach_rows, reach_columns = int(radius_mm // rows_mm), int(radius_mm // columns_mm)
    dy, dx = np.mgrid[-reach_rows:reach_rows + 1, -reach_columns:reach_columns + 1]
    return (dy * rows_mm) ** 2 + (dx * columns_mm) ** 2 <= radius_mm ** 2 * (1.0 + 1e-9)


def _every_second_pixel(shape_zyx: tuple, geometry: ImageGeometry, axis: int) -> tuple:
    """The two slices (of the plane's rows and columns: the array axes other than ``axis``, in order) that read every
    second pixel, starting where the same pixels of the patient are read however the CT is stored (an axis running
    against the patient's L, P or S direction starts at its far end's parity): an arm touching the trunk across a
    one-pixel gap counted in one storage and not in another (the 20-slice CT shrunk to 0.6x: 194.8 or 190.7 mm)."""
    from .sampling import anchored_start

    rows, columns = (slice(anchored_start(geometry, shape_zyx, a, 2), None, 2) for a in range(3) if a != axis)
    return rows, columns


def _in_plane_axes_xyz(axis: int) -> list:
    """Positions in ``(x, y, z)`` spacing order of the two array axes other than ``axis`` (``(z, y, x)`` order)."""
    return [2 - a for a in range(3) if a != axis]


def _pixel_area_mm2(geometry: ImageGeometry, axis: int) -> float:
    """Area (mm^2) of one pixel of an axial plane read every second pixel (4 pixels of the CT)."""
    first, second = (geometry.spacing[i] for i in _in_plane_axes_xyz(axis))
    return 4.0 * first * second


def outside_scan_pixels(plane: np.ndarray, pixel_spacing_mm: tuple) -> np.ndarray:
    """The pixels of ``plane`` (2D HU, ``pixel_spacing_mm`` its (row, column) pixel size) outside the scanner's field
    of view: below :data:`PADDING_BELOW_HU`, a round field of view padded with the value of air
    (:func:`_round_air_padding`), or a resampling's fill of air beyond a straight line (:func:`straight_air_fill`).
    The body-size check's rule; the lesion report's scan-edge flag and the liver's cut check read it too."""
    padding = plane < PADDING_BELOW_HU
    if not padding.any():
        padding = _round_air_padding(plane, pixel_spacing_mm)
    return padding | straight_air_fill(plane, pixel_spacing_mm)


def round_air_padding_zyx(hu_zyx: np.ndarray, geometry: ImageGeometry) -> Optional[np.ndarray]:
    """The voxels (bool, ``(z, y, x)``) of a round field of view's padding written with air's value
    (:func:`_round_air_padding`) in a CT ``hu_zyx`` (HU on ``geometry``), or None where none is found. The circle is
    the reconstruction's, the same in every slice: it is found in the middle axial slice (else the slices a quarter
    from either end), and each slice's padding is its pixels outside that circle holding the padding's value (13 ms
    a 512 x 512 slice read whole; once, not once per slice). A slice holding padding below
    :data:`PADDING_BELOW_HU` is not read (that padding is found by its value)."""
    from ..metrics.recist import axial_axis_zyx

    hu = np.asarray(hu_zyx)
    if hu.ndim != 3 or min(hu.shape) < 1:
        return None
    axis = axial_axis_zyx(geometry)
    pixel_spacing_mm = tuple(float(geometry.spacing[2 - a]) for a in range(3) if a != axis)  # (rows, columns)
    count = hu.shape[axis]
    for k in dict.fromkeys((count // 2, count // 4, (3 * count) // 4)):
        plane = np.take(hu, k, axis=axis)
        if (plane < PADDING_BELOW_HU).any():
            continue
        region = _round_air_padding(plane, pixel_spacing_mm)
        if region.any():
            return (hu == plane[region][0]) & np.expand_dims(region, axis)
    return None


AIR_FILL_HU = -1024.0
"""The value of air a resampling's fill is written with, which :func:`straight_air_fill` looks for in a slice that
holds the scanner's padding (below :data:`~LiverTumorSegLib.validation.PADDING_BELOW_HU`, -3024 or -2048 outside a
round field of view): there the slice's lowest value is the padding, and a resampling puts values between padding
and air (-3024..-1024) on a ring along the circle."""


def straight_fill_value(plane: np.ndarray) -> Any:
    """The value :func:`straight_air_fill` reads as a fill in ``plane`` (2D HU), in its dtype: the plane's lowest
    value; in a plane holding the scanner's padding (below :data:`~LiverTumorSegLib.validation.PADDING_BELOW_HU`),
    :data:`AIR_FILL_HU` where the plane holds it exactly. None where there is none to read (no such value, or one
    not below :data:`BODY_HU`)."""
    lowest = plane.min()
    if lowest < PADDING_BELOW_HU:  # a dtype that holds the padding holds -1024 too
        return plane.dtype.type(AIR_FILL_HU) if (plane == AIR_FILL_HU).any() else None
    return lowest if lowest < BODY_HU else None


def _outside_field_of_view(plane: np.ndarray) -> Optional[np.ndarray]:
    """The pixels of ``plane`` (2D HU) outside the scanner's round field of view where it holds padding (below
    :data:`~LiverTumorSegLib.validation.PADDING_BELOW_HU`): the padding and the values below :data:`AIR_FILL_HU`
    joined to it, the ring a resampling puts between padding and air along the circle (-3024..-1024, read as a
    border with the rest it made the circle's arcs a border, and air set to -1024 beyond a flat back a fill). None
    for a plane without such padding."""
    from scipy import ndimage

    padding = plane < PADDING_BELOW_HU
    if not padding.any():
        return None
    parts, _ = ndimage.label(plane < AIR_FILL_HU)
    joined = np.unique(parts[padding])
    return np.isin(parts, joined[joined > 0])


def straight_air_fill(plane: np.ndarray, pixel_spacing_mm: tuple) -> np.ndarray:
    """A resampling's fill written with an air value (-1024) beyond the old grid: the regions holding exactly the
    plane's lowest value (below :data:`BODY_HU`; in a plane holding the scanner's padding, :data:`AIR_FILL_HU`:
    :func:`straight_fill_value`) that reach the plane's edge and whose border with the rest (at least
    :data:`MIN_FOV_BORDER_PIXELS` pixels; the padding and the ring a resampling put beside it are no part of the rest,
    :func:`_outside_field_of_view`, as the field of view's circle is no fill's edge) is a straight line (median distance from the line fitted to it at most
    :data:`MAX_FILL_LINE_DISTANCE_PIXELS`). Read as air, the body it cuts along that line was measured as a small
    body and enlarged for the network: the 20-slice CT on a grid turned 30 degrees with a -1024 fill measured 184 mm
    (x1.59), and had 7 false lesions instead of 1 (the same fill at 0 HU, found by :mod:`.resampling_fill`). Where
    that line fit misses, a robust line with a field of view's circle beside it may hold the border
    (:func:`_fill_beyond_robust_line`: the fill merged with a round field of view padded with -1024 and with air
    clipped to -1024), and the region's pixels beyond the line are found. Real air is noisy and air set to one value
    borders the body's curved surface. Else no pixel (all False)."""
    from scipy import ndimage

    found = np.zeros(plane.shape, dtype=bool)
    lowest = straight_fill_value(plane)
    if lowest is None:
        return found
    padding = _outside_field_of_view(plane)
    parts, _ = ndimage.label(plane == lowest)
    at_edge = np.unique(np.concatenate([parts[0], parts[-1], parts[:, 0], parts[:, -1]]))
    sizes = np.bincount(parts.ravel())
    boxes = ndimage.find_objects(parts)
    for label in at_edge[at_edge > 0]:
        if sizes[label] < MIN_FOV_BORDER_PIXELS:  # its border is part of it: too short (the specks of exact air)
            continue
        # each part on its box grown by a pixel (its pixels' neighbours), not the whole plane: 16 slices of 10 such
        # parts each took 0.046 s of a 300-slice CT's body size
        box = tuple(slice(max(b.start - 1, 0), min(b.stop + 1, n)) for b, n in zip(boxes[label - 1], plane.shape))
        region = parts[box] == label
        rest = ~region if padding is None else ~region & ~padding[box]
        border = region & _with_face_neighbours(rest)  # fill pixels beside the rest of the plane
        _clear_plane_edges(border, box, plane.shape)
        if border.sum() < MIN_FOV_BORDER_PIXELS:
            continue
        rows, columns = np.nonzero(border)
        points = np.stack([rows * float(pixel_spacing_mm[0]), columns * float(pixel_spacing_mm[1])], axis=1)
        tolerance_mm = MAX_FILL_LINE_DISTANCE_PIXELS * max(pixel_spacing_mm)
        centred = points - points.mean(axis=0)
        normal = np.linalg.svd(centred, full_matrices=False)[2][1]  # the total-least-squares line's normal
        if np.median(np.abs(centred @ normal)) <= tolerance_mm:
            found[box] |= region
            continue
        beyond = _fill_beyond_robust_line(plane[box], region, border, points, pixel_spacing_mm, rest)
        if beyond is not None:
            found[box] |= beyond
    return found


def _fill_beyond_robust_line(plane: np.ndarray, region: np.ndarray, border: np.ndarray, points: np.ndarray,
                             pixel_spacing_mm: tuple, rest: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """The pixels of ``region`` (2D mask of the lowest value on the part ``plane`` of a slice, HU) beyond a straight
    line, where the line fitted to all of its border with the rest (``border``; ``points``: its pixels' (row, column)
    positions in mm) missed: the line most border pixels lie within :data:`MAX_FILL_LINE_DISTANCE_PIXELS` of
    (:func:`_dominant_line`, at least :data:`MIN_FOV_BORDER_PIXELS`) holds half of them or more, or holds fewer and a
    round field of view's circle (:func:`_field_of_view_circle`) the line's pixels lie off (median distance over twice
    :data:`MAX_FOV_CIRCLE_DISTANCE_PIXELS`: no chord of the circle) holds the rest up to half. A resampling's fill of
    -1024 HU added to a CT whose round field of view is padded with -1024 and whose air is clipped at -1024 in places
    merges with both: the 20-slice CT with rows beyond a slanted line set to -1024 measured 285 mm across, uncut,
    against 324.6 as scanned. Air a CT has had set to one value, a body with a flat back lying in it, holds no such
    circle (body, not air, inside it). ``rest``: the pixels of the slice that are neither ``region`` nor the scanner's
    padding (default: all but ``region``). Else None."""
    if rest is None:
        rest = ~region
    pixel_mm = max(float(s) for s in pixel_spacing_mm)
    line = _dominant_line(points, MAX_FILL_LINE_DISTANCE_PIXELS * pixel_mm)
    if line is None or line[0].sum() < MIN_FOV_BORDER_PIXELS:
        return None
    on_line, point_on_line, normal = line
    border_rows, border_columns = np.nonzero(border)
    if on_line.mean() < 0.5:
        rest_border = np.zeros(border.shape, dtype=bool)
        rest_border[border_rows[~on_line], border_columns[~on_line]] = True
        circle = _field_of_view_circle(plane, rest, rest_border, pixel_spacing_mm)
        if circle is None:
            return None
        (centre, radius), on_circle = circle
        line_off_circle = np.abs(np.hypot(*(points[on_line] - centre).T) - radius)
        if (on_line.sum() + on_circle) < 0.5 * len(points) or \
                np.median(line_off_circle) <= 2.0 * MAX_FOV_CIRCLE_DISTANCE_PIXELS * pixel_mm:
            return None
    line_border = np.zeros(border.shape, dtype=bool)
    line_border[border_rows[on_line], border_columns[on_line]] = True
    rows, columns = np.nonzero(rest & _with_face_neighbours(line_border))  # the rest of the slice beside the line
    inside = np.stack([rows * float(pixel_spacing_mm[0]), columns * float(pixel_spacing_mm[1])], axis=1)
    inside_side = np.sign(np.median((inside - point_on_line) @ normal))
    rows, columns = np.nonzero(region)
    pixels = np.stack([rows * float(pixel_spacing_mm[0]), columns * float(pixel_spacing_mm[1])], axis=1)
    beyond = np.zeros(region.shape, dtype=bool)
    beyond[rows, columns] = (pixels - point_on_line) @ normal * inside_side <= MAX_FILL_LINE_DISTANCE_PIXELS * pixel_mm
    return beyond


def _dominant_line(points: np.ndarray, tolerance_mm: float) -> Optional[tuple]:
    """The straight line that most of ``points`` ((n, 2) mm) lie within ``tolerance_mm`` of: ``(on_line, point,
    normal)`` (bool per point, a point on the line and its unit normal, mm), or None for fewer than 2 points. Found by
    a Hough vote of at most :data:`HOUGH_VOTERS` of the points (every n-th) over directions every 0.5 degree and
    offsets in bins of ``2 x tolerance_mm``, then refined by total least squares on all the points near it."""
    if len(points) < 2:
        return None
    angles = np.deg2rad(np.arange(0.0, 180.0, 0.5))
    normals = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    offsets = points[::max(1, -(-len(points) // HOUGH_VOTERS))] @ normals.T  # (voters, directions)
    lowest = offsets.min()
    bins = np.floor((offsets - lowest) / (2.0 * tolerance_mm)).astype(np.int64)
    width = int(bins.max()) + 2
    votes = np.bincount((bins + width * np.arange(len(angles))).ravel(), minlength=width * len(angles))
    votes = votes.reshape(len(angles), width)
    votes = votes[:, :-1] + votes[:, 1:]  # two neighbouring bins: a line on a bin's edge is not split
    direction, first_bin = np.unravel_index(int(np.argmax(votes)), votes.shape)
    low = lowest + first_bin * 2.0 * tolerance_mm
    offset = points @ normals[direction]
    near = (offset >= low) & (offset < low + 4.0 * tolerance_mm)
    if near.sum() < 2:
        return None
    for _ in range(2):  # refit on the points near the line, then keep those within the tolerance
        point = points[near].mean(axis=0)
        normal = np.linalg.svd(points[near] - point, full_matrices=False)[2][1]
        near = np.abs((points - point) @ normal) <= tolerance_mm
        if near.sum() < 2:
            return None
    return near, point, normal


def _circle_fit(points: np.ndarray) -> Optional[tuple]:
    """The circle nearest ``points`` ((n, 2) mm) in least squares (Kasa's fit of x^2 + y^2 + a x + b y + c = 0):
    ``(centre, radius)`` (mm), or None where no real circle fits."""
    y, x = points[:, 0], points[:, 1]
    (a, b, c), *_ = np.linalg.lstsq(np.stack([x, y, np.ones_like(x)], axis=1), -(x ** 2 + y ** 2), rcond=None)
    radius_squared = (a ** 2 + b ** 2) / 4.0 - c
    if not radius_squared > 0:
        return None
    return np.array([-b / 2.0, -a / 2.0]), float(np.sqrt(radius_squared))


def _field_of_view_circle(plane: np.ndarray, inside: np.ndarray, border: np.ndarray, pixel_spacing_mm: tuple
                          ) -> Optional[tuple]:
    """``((centre, radius), count)``: a circle (mm) fitted to the pixels of ``border`` (2D mask on ``plane``, HU,
    ``pixel_spacing_mm`` its (row, column) pixel size) that ``count`` of them, at least :data:`MIN_FOV_BORDER_PIXELS`,
    lie within :data:`MAX_FOV_CIRCLE_DISTANCE_PIXELS` of, with air below :data:`BODY_HU` in the ``inside`` pixels
    beside those along at least :data:`MIN_FOV_AIR_FRACTION` of them: part of a round field of view's edge. The fit
    is refitted twice on the pixels within 3 x that distance of it (the rest: air clipped to the same value that joins
    the padding). Else None."""
    rows, columns = np.nonzero(border)
    points = np.stack([rows * float(pixel_spacing_mm[0]), columns * float(pixel_spacing_mm[1])], axis=1)
    tolerance_mm = MAX_FOV_CIRCLE_DISTANCE_PIXELS * max(float(s) for s in pixel_spacing_mm)
    near = np.ones(len(points), dtype=bool)
    for _ in range(3):
        circle = _circle_fit(points[near]) if near.sum() >= 3 else None
        if circle is None:
            return None
        off_circle = np.abs(np.hypot(*(points - circle[0]).T) - circle[1])
        near = off_circle <= 3.0 * tolerance_mm
    on_circle = off_circle <= tolerance_mm
    if on_circle.sum() < MIN_FOV_BORDER_PIXELS:
        return None
    circle_border = np.zeros(border.shape, dtype=bool)
    circle_border[rows[on_circle], columns[on_circle]] = True
    beside = inside & _with_face_neighbours(circle_border)
    if not beside.any() or np.mean(plane[beside] < BODY_HU) < MIN_FOV_AIR_FRACTION:
        return None
    return circle, int(on_circle.sum())


def _clear_plane_edges(mask: np.ndarray, box: tuple, plane_shape: tuple) -> None:
    """Set to False, in place, the pixels of ``mask`` (the part ``box`` of a plane of ``plane_shape``) that lie on
    the plane's first or last row or column."""
    if box[0].start == 0:
        mask[0] = False
    if box[0].stop == plane_shape[0]:
        mask[-1] = False
    if box[1].start == 0:
        mask[:, 0] = False
    if box[1].stop == plane_shape[1]:
        mask[:, -1] = False


def _round_air_padding(plane: np.ndarray, pixel_spacing_mm: tuple) -> np.ndarray:
    """Padding outside a round field of view written with an air value (-1024, -1000) instead of -2000 or -3024: the
    pixels holding exactly the plane's lowest value, connected to a corner, whose border with the rest (at least
    :data:`MIN_FOV_BORDER_PIXELS` pixels) is a circle (median distance from the circle fitted to it at most
    :data:`MAX_FOV_CIRCLE_DISTANCE_PIXELS`) with air below :data:`BODY_HU` inside it along at least
    :data:`MIN_FOV_AIR_FRACTION` of it. Real air is noisy, so one value never covers it (a few pixels clipped to the
    lowest value are not a circle's border); air a CT has had set to one value borders the body, not a circle with
    air inside it. Else no pixel (all False)."""
    from scipy import ndimage

    none = np.zeros(plane.shape, dtype=bool)
    lowest = plane.min()
    corners = plane[[0, 0, -1, -1], [0, -1, 0, -1]]
    if lowest >= BODY_HU or not (corners == lowest).any():
        return none
    parts, _ = ndimage.label(plane == lowest)
    at_corners = np.unique(parts[[0, 0, -1, -1], [0, -1, 0, -1]])
    region = np.isin(parts, at_corners[at_corners > 0])
    inside = ~region
    border = region & _with_face_neighbours(inside)  # padding pixels beside the field of view
    border[0], border[-1], border[:, 0], border[:, -1] = False, False, False, False
    if border.sum() < MIN_FOV_BORDER_PIXELS:
        return none
    rows, columns = np.nonzero(border)
    y, x = rows * float(pixel_spacing_mm[0]), columns * float(pixel_spacing_mm[1])
    circle = _circle_fit(np.stack([y, x], axis=1))
    if circle is None:
        return none
    off_circle = np.abs(np.hypot(y - circle[0][0], x - circle[0][1]) - circle[1])
    if np.median(off_circle) > MAX_FOV_CIRCLE_DISTANCE_PIXELS * max(pixel_spacing_mm):
        return none
    beside = inside & _with_face_neighbours(border)  # the field of view's pixels along the circle
    if np.mean(plane[beside] < BODY_HU) < MIN_FOV_AIR_FRACTION:
        return none
    return region


def _with_face_neighbours(mask: np.ndarray) -> np.ndarray:
    """``mask`` (2D) and the pixels beside it (a face neighbour): its dilation by a cross, in a few array shifts."""
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown


def _cut_edge_fraction(part: np.ndarray, padding: np.ndarray) -> float:
    """The share of ``part``'s edge pixels (a 2D mask) that lie on the plane's edge or beside (a face neighbour)
    ``padding`` (:func:`outside_scan_pixels`): where the image or a round field of view cuts the body."""
    from scipy import ndimage

    edge = part & ~ndimage.binary_erosion(part)
    frame = np.zeros(part.shape, dtype=bool)
    frame[0], frame[-1], frame[:, 0], frame[:, -1] = True, True, True, True
    if padding.any():
        frame |= _with_face_neighbours(padding)
    return float((part & frame).sum()) / max(int(edge.sum()), 1)


def training_body_diameter_mm(metadata: Any) -> Optional[float]:
    """The smallest measured training body (mm) a package's ``metadata`` records (:data:`PACKAGE_KEY`), or None."""
    record = metadata.get(PACKAGE_KEY) if isinstance(metadata, dict) else None
    if not isinstance(record, dict):
        return None
    widths = [float(w) for w in record.values()
              if isinstance(w, (int, float)) and not isinstance(w, bool) and np.isfinite(w) and w > 0]
    return min(widths) if widths else None


def in_plane_scale(diameter_mm: Optional[float], training_diameter_mm: Optional[float]) -> float:
    """The factor the in-plane pixel spacing is multiplied by for the network: 1.0 for a body not measured, a package
    without training diameters, or a body at least :data:`SMALL_FRACTION` x ``training_diameter_mm`` wide; else
    ``TARGET_FRACTION x training_diameter_mm / diameter_mm``, at most :data:`MAX_IN_PLANE_SCALE`."""
    if diameter_mm is None or training_diameter_mm is None or not diameter_mm > 0:
        return 1.0
    if diameter_mm >= SMALL_FRACTION * training_diameter_mm:
        return 1.0
    return float(min(TARGET_FRACTION * training_diameter_mm / diameter_mm, MAX_IN_PLANE_SCALE))


def with_in_plane_scale(volume: CTVolume, scale: float) -> CTVolume:
    """``volume`` with the same voxels (not copied) and its two in-plane pixel spacings multiplied by ``scale``
    (the axis closest to head-foot keeps its spacing; origin and direction kept): what the network is given.

    Known limit: on a grid turned against the patient's axes the in-plane axes are turned too, so the enlargement
    stretches the anatomy along them, and the patient-aligned grid the network then runs on
    (:mod:`.axis_aligned`) shows it sheared: a horizontal plate lay 5.9 degrees oblique there for a grid turned 10
    degrees and 11.4 for one turned 20, at a scale of 2.4 (the oblique-grid audit). A pure left-right / front-back
    enlargement of a turned grid is no grid of orthogonal axes; doing it on the aligned grid instead is not built."""
    from ..metrics.recist import axial_axis_zyx

    spacing = list(volume.geometry.spacing)
    for i in _in_plane_axes_xyz(axial_axis_zyx(volume.geometry)):
        spacing[i] *= scale
    return CTVolume(volume.array, replace(volume.geometry, spacing=tuple(spacing)), source=volume.source,
                    meta=volume.meta)


def body_size_record(volume: CTVolume, training_diameter_mm: Optional[float],
                     outside_scan_zyx: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """The report's ``body_size``: :func:`body_diameter_mm` of ``volume`` (in HU; ``outside_scan_zyx``: a resampling's
    fill, counted as padding), the package's smallest training body (``training_diameter_mm``, None when it records
    none) and the ``in_plane_scale`` the network got."""
    record = body_diameter_mm(volume.array, volume.geometry, outside_scan_zyx)
    record["training_diameter_mm"] = training_diameter_mm
    record["in_plane_scale"] = round(in_plane_scale(record["diameter_mm"], training_diameter_mm), 3)
    return record


def body_size_failed_record(training_diameter_mm: Optional[float], error: BaseException) -> Dict[str, Any]:
    """The report's ``body_size`` when :func:`body_size_record` raised ``error``: nothing measured, the CT given to
    the network as it is (``in_plane_scale`` 1.0), and ``error`` (the exception's type and text), which
    :func:`body_size_warning` turns into a warning."""
    return {"diameter_mm": None, "slices_measured": 0, "slices_cut": 0, "training_diameter_mm": training_diameter_mm,
            "in_plane_scale": 1.0, "error": f"{type(error).__name__}: {error}"}


def body_size_warning(record: Dict[str, Any]) -> Optional[str]:
    """The report's warning when :func:`body_size_record` scaled the CT for the network, or when it failed
    (:func:`body_size_failed_record`); else None."""
    from ..errors import option_hint

    if record.get("error"):
        return (f"The body size check failed ({record['error']}) and was left out: the CT was given to the network "
                f"as it is, not enlarged for a small body; the segmentation and the report's measurements do not "
                f"depend on it otherwise.")
    scale = record.get("in_plane_scale", 1.0)
    if scale == 1.0:
        return None
    return (f"The body measures {record['diameter_mm']:.0f} mm across (area-equivalent diameter), much smaller than "
            f"the smallest body the model was trained on ({record['training_diameter_mm']:.0f} mm): a child, or a "
            f"small patient. The network was given the CT enlarged {scale:.2f}x in-plane, so that the anatomy appears "
            f"at about a training body's size; volumes and lengths are measured on the CT's own grid. No child's CT "
            f"was among the training or test data: check the outline slice by slice. To give the CT as it is, run "
            f"again with {option_hint('--no-body-size-scaling', 'body_size_scaling=False')}.")
