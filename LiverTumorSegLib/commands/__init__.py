"""Subcommands of the ``livertumorseg`` CLI; see :mod:`LiverTumorSegLib.cli` for the contract."""


def read_checked_ct(path, series=None, allow_non_hu: bool = False, warnings_out=None, non_hu_going_on=None):
    """``read_volume(path, series)`` with :func:`~LiverTumorSegLib.validation.check_ct`: InputError for what
    cannot be a CT (NaN/Inf, constant, not HU unless ``allow_non_hu``), each warning printed on stderr as
    ``warning: ...`` and appended to the list ``warnings_out`` when given (for a report). ``non_hu_going_on``:
    check_ct's ending for values that do not look like HU (its default when None)."""
    import sys

    from ..io import read_volume
    from ..validation import NON_HU_GOING_ON, check_ct

    volume = read_volume(path, series=series)
    for warning in check_ct(volume, allow_non_hu=allow_non_hu, non_hu_going_on=non_hu_going_on or NON_HU_GOING_ON):
        print(f"warning: {warning}", file=sys.stderr)
        if warnings_out is not None:
            warnings_out.append(warning)
    return volume
