"""Subcommands of the ``livertumorseg`` CLI; see :mod:`LiverTumorSegLib.cli` for the contract."""


def read_checked_ct(path, series=None, allow_non_hu: bool = False, warnings_out=None):
    """``read_volume(path, series)`` with :func:`~LiverTumorSegLib.validation.check_ct`: InputError for what
    cannot be a CT (NaN/Inf, constant, not HU unless ``allow_non_hu``), each warning printed on stderr as
    ``warning: ...`` and appended to the list ``warnings_out`` when given (for a report)."""
    import sys

    from ..io import read_volume
    from ..validation import check_ct

    volume = read_volume(path, series=series)
    for warning in check_ct(volume, allow_non_hu=allow_non_hu):
        print(f"warning: {warning}", file=sys.stderr)
        if warnings_out is not None:
            warnings_out.append(warning)
    return volume
