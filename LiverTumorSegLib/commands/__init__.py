"""Subcommands of the ``livertumorseg`` CLI; see :mod:`LiverTumorSegLib.cli` for the contract."""


def read_one_series(path, command: str):
    """``read_volume(path)`` for a command without ``--series`` (``command``: its name): a DICOM folder of several
    series is refused saying to give the folder of the one series wanted, where read_volume's message told the
    user to 'choose one with --series', an option the command does not have. The series are still listed."""
    from ..io import read_volume
    from ..io.dicom import SeveralSeriesError
    from ..errors import InputError

    try:
        return read_volume(path)
    except SeveralSeriesError as exc:
        listing = str(exc).split("\n", 1)[1] if "\n" in str(exc) else ""
        raise InputError(f"{exc.headline}; {command} has no --series: give the folder that holds only the series "
                         f"you want (e.g. export it alone):\n{listing}".rstrip()) from None


def read_checked_ct(path, series=None, allow_non_hu: bool = False, warnings_out=None, non_hu_going_on=None,
                    command: str = "", for_model: bool = True, aligned_for_model: bool = False,
                    label_map_advice: str = ""):
    """``read_volume(path, series)`` with :func:`~LiverTumorSegLib.validation.check_ct`: InputError for what
    cannot be a CT (NaN/Inf, constant, not HU unless ``allow_non_hu``), each warning printed on stderr as
    ``warning: ...`` and appended to the list ``warnings_out`` when given (for a report). ``non_hu_going_on``:
    check_ct's ending for values that do not look like HU (its default when None). ``command``: the name of a
    command without ``--series`` (:func:`read_one_series`). ``for_model``: check_ct's (False where no model reads the
    CT: an oblique grid is then warned about as measurements see it); ``aligned_for_model``: check_ct's (segment
    and ``preprocess``, which give the model an oblique CT on a patient-aligned grid). ``label_map_advice``: when
    given, a volume that looks like a label map is refused with it (InputError) even where ``allow_non_hu`` lets
    other values through with a warning."""
    import sys

    from ..io import read_volume
    from ..validation import NON_HU_GOING_ON, check_ct

    volume = read_one_series(path, command) if command else read_volume(path, series=series)
    for warning in check_ct(volume, allow_non_hu=allow_non_hu, non_hu_going_on=non_hu_going_on or NON_HU_GOING_ON,
                            for_model=for_model, aligned_for_model=aligned_for_model,
                            label_map_advice=label_map_advice):
        print(f"warning: {warning}", file=sys.stderr)
        if warnings_out is not None:
            warnings_out.append(warning)
    return volume
