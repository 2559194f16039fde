"""``livertumorseg preprocess``: show what a preprocessing configuration feeds the network.

    livertumorseg preprocess INPUT -o preview.png [--preset NAME | --config CONFIG.json | --model NAME|PATH]
                             [--overwrite] [--series UID] [--slices N] [--allow-non-hu]

Reads the CT (file or DICOM folder), puts it in canonical orientation, applies the preprocessing and
writes a PNG grid: rows = axial slices, columns = the original (abdomen window) and each channel.
"""
import argparse
from pathlib import Path
from typing import Any, Tuple

from ..argtypes import number
from ..errors import InputError


def register(subparsers: Any) -> argparse.ArgumentParser:
    from ..io.formats import READ_SUFFIXES
    from ..preprocessing.config import PRESETS, preset_name
    p = subparsers.add_parser("preprocess", help="preview the network input channels of a CT as a PNG",
                              description="Apply a preprocessing configuration to a CT and write a PNG grid of "
                                          "axial slices (original + each input channel).")
    p.add_argument("input", help=f"CT file ({', '.join(READ_SUFFIXES)}) or DICOM folder")
    p.add_argument("-o", "--output", required=True, help="preview PNG to write")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--preset", default=None, choices=sorted(PRESETS), type=preset_name, metavar="NAME",
                       help=f"named preprocessing: {', '.join(sorted(PRESETS))} (default: 'default', the bundled "
                            f"model's; the others follow the papers this project started from, see README)")
    group.add_argument("--config", default=None, metavar="JSON", help="preprocessing config JSON file")
    group.add_argument("--model", default=None,
                       help="the preprocessing recorded in this model package (an installed model's name, "
                            "'default', or a .safetensors path), as segment applies it with --model, except that a "
                            "child-sized body, which segment gives the network enlarged in-plane (a package that "
                            "resamples to a pixel spacing), is shown at its own size")
    p.add_argument("--slices", type=number(int), default=3, help="number of axial slices to show (default 3)")
    p.add_argument("--series", default=None,
                   help="which series of a DICOM folder holding several: its SeriesInstanceUID, a unique UID "
                        "prefix, its series description, or its number in the listing the error shows (1, 2, ...)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--allow-non-hu", action="store_true",
                   help="accept intensities that do not look like Hounsfield units (with a warning)")
    p.add_argument("--no-progress", "--no-progress-bar", action="store_true",
                   help="accepted like in the other commands; preprocess shows no progress bar anyway")
    return p


def run(args: argparse.Namespace) -> int:
    from ..fileutil import check_can_write
    from . import read_checked_ct
    from ..orientation import canonicalize
    from ..preprocessing import PreprocessingConfig, render_preview

    if args.slices < 1:
        raise InputError(f"--slices must be >= 1 (got {args.slices}).")
    if not str(args.output).lower().endswith(".png"):
        raise InputError(f"Preview output '{args.output}' must end in .png.")
    check_can_write(args.output, args.overwrite)  # fail before the (slow) read
    if args.model is not None:
        config = _package_preprocessing(args.model)
    elif args.config and str(args.config).lower().endswith(".safetensors"):
        raise InputError(f"'{args.config}' is a model package, not a preprocessing config JSON file; preview its "
                         f"preprocessing with --model {args.config}.")
    elif args.config and str(args.config).lower().endswith((".yaml", ".yml")):  # was 'not valid JSON'
        raise InputError(f"'{args.config}' is a YAML file, such as a training recipe (train --config), not a "
                         f"preprocessing config JSON file; preview a recipe's input with --preset NAME (its "
                         f"'preprocessing' value, e.g. --preset default) or a trained package's with --model.")
    else:
        config = (PreprocessingConfig.from_file(args.config, given=True) if args.config
                  else PreprocessingConfig.preset(args.preset or "default"))
    volume, aligned = _as_segment_gives_it(read_checked_ct(args.input, args.series, args.allow_non_hu,
                                                           aligned_for_model=True), config)
    from ..validation import check_network_memory

    check_network_memory(volume, config)  # the preview resamples the whole volume to the network grid
    canonical, _ = canonicalize(volume)
    out = render_preview(canonical, config, args.output, n_slices=args.slices, overwrite=args.overwrite,
                         # an oblique CT's 'original HU' column showed the aligned grid's size and pixels
                         first_column="HU on segment's patient-aligned grid" if aligned else "original HU")
    print(f"wrote {out}")
    apart = config.context_text(canonical.spacing_zyx[0])
    print(f"network input: {config.in_channels} channels = {config.channels_per_slice} per slice x "
          f"{config.num_context} slice(s) (context_slices={config.context_slices}{apart and ', ' + apart}), "
          f"slice-major")
    for i, name in enumerate(config.channel_descriptions):
        print(f"  channel {i}: {name}")
    return 0


def _as_segment_gives_it(volume: Any, config: Any = None) -> Any:
    """``volume`` as ``segment`` gives it to the network: a CT in HU with a resampling's fill outside its original
    field of view (:mod:`~..inference.resampling_fill`) gets -1024 HU there on a copy, with segment's warning on
    stderr (the preview showed the fill as the soft tissue the network would have seen); then a CT turned more than
    :data:`~..inference.axis_aligned.OBLIQUE_THRESHOLD_DEGREES` against the patient's axes is resampled onto the
    patient-aligned grid segment runs the network on (``config``'s in-plane spacing; the preview showed the
    oblique slices segment no longer gives the network). Returns ``(volume, resampled onto the aligned grid)``."""
    import sys

    from ..inference.resampling_fill import fill_replaced, resampling_fill_warning
    from ..validation import not_hu_reason

    if not_hu_reason(volume) is None:
        volume, fill = fill_replaced(volume)
        if fill is not None:
            print(f"warning: {resampling_fill_warning(fill.record())}", file=sys.stderr)
    return _on_the_network_grid_of_segment(volume, config)


def _on_the_network_grid_of_segment(volume: Any, config: Any) -> Tuple[Any, bool]:
    """``(volume on segment's patient-aligned grid, True)`` when it is oblique (:mod:`~..inference.axis_aligned`),
    else ``(volume, False)``."""
    from ..inference import axis_aligned
    from ..orientation import obliquity_degrees

    if obliquity_degrees(volume.geometry.direction_matrix) <= axis_aligned.OBLIQUE_THRESHOLD_DEGREES:
        return volume, False
    target = None if getattr(config, "target_size", None) else getattr(config, "target_spacing_mm", None)
    return axis_aligned.onto_aligned_grid(volume, axis_aligned.aligned_spacing_xyz(volume, target))[0], True


def _package_preprocessing(model: str) -> Any:
    """The preprocessing recorded in the model package ``model`` (a name, "default" or a path), read from its header
    (metadata integrity checked as loading checks it; no weights are read) and judged as loading judges it
    (``package._recorded_preprocessing``: a setting a package of its version must record refused, a newer version's
    setting refused with the advice to update; ``package._warn_unrecorded_preprocessing``: an older package's
    unrecorded settings warned of). It was read with PreprocessingConfig.from_dict alone, so a package segment
    refuses was previewed with the library's default windows (the package audit)."""
    from ..package import (ModelPackageError, _recorded_preprocessing, _warn_unrecorded_preprocessing,
                           read_package_metadata, resolve_model)

    path = resolve_model(model)
    meta = read_package_metadata(path)
    if not meta.get("preprocessing"):
        raise ModelPackageError(f"Model package '{path}' records no preprocessing configuration; it cannot show "
                                f"what the network was trained on.")
    config = _recorded_preprocessing(meta, Path(path))
    _warn_unrecorded_preprocessing(meta.get("preprocessing") or {}, config, Path(path), meta)
    return config
