"""Label values of the slice cache: 0 background, 1 liver, 2 liver tumor, and :data:`IGNORE_LABEL`.

:data:`IGNORE_LABEL` marks network-grid voxels no loss and no validation Dice counts: those of an oblique CT's
patient-aligned grid outside the CT's footprint (:func:`~.slice_cache.aligned_network_ct`), where the grid holds
only the CT's edge voxels repeated and ``segment`` labels nothing (it runs the network only around the footprint and
brings labels back onto the CT's own grid). Read as background, the network was taught that repeated tissue there
is background. An axis-aligned CT's labels never hold it.
"""
IGNORE_LABEL = 255


def organ(labels):
    """Liver or tumor (label 1 or 2) of a label array (numpy or torch): ``labels >= 1`` counted ignored voxels as
    liver."""
    return (labels == 1) | (labels == 2)
