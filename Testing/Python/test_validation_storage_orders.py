"""check_ct on a CT stored in any axis order."""
import pytest
from inference_helpers import reoriented

from LiverTumorSegLib.phantom import make_phantom
from LiverTumorSegLib.validation import check_ct


@pytest.mark.parametrize("source_axis, flip", [((0, 1, 2), (False, False, False)), ((1, 0, 2), (False, False, False)),
                                               ((2, 1, 0), (False, True, False)), ((1, 2, 0), (True, False, True))])
def test_thick_slices_are_warned_of_however_the_ct_is_stored(source_axis, flip):
    """7 mm axial slices stored coronal or sagittal (the slice axis not first in the array) went unwarned: the stored
    array's first axis and its spacing were read as the slices (the oblique-grid audit)."""
    ph = make_phantom(shape_zyx=(10, 48, 40), spacing_xyz=(1.5, 1.5, 7.0), seed=0)
    volume, _ = reoriented(ph.ct, ph.labels, source_axis, flip)
    warnings = check_ct(volume)
    assert sum("has thick slices (7 mm)" in w for w in warnings) == 1, warnings
