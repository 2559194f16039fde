"""Fine-tuning: a training run whose network starts from a model package's weights (``train --init-from PACKAGE``).

The package is loaded and verified as ``segment`` loads it (weights hash, metadata hash, limits). Its network must
be the run's: the same architecture, options, input channels and classes, and the same preprocessing (window
levels and widths, in-plane grid, 2.5D context), since weights learnt on one input mean nothing on another. The
``train`` command takes ``--model``, ``--model-options`` and ``--preprocessing`` from the package when they are not
given (:func:`package_settings`); given and different, the run is refused before any data is read.

What the run started from is recorded in its package (``training.init_from``: the package's path, name and weights
SHA-256, and which of this run's validation patients the starting package was trained on). A validation patient the
starting package was trained on is not held out: the run warns, and its validation says so
(``validation.init_trained_on_validation_patients``), as a fold of ``crossval`` started from the bundled default
(trained on every shared patient) would otherwise report leave-one-patient-out numbers that are not.
"""
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..errors import InputError

log = logging.getLogger(__name__)


def package_settings(init_from: str) -> Dict[str, Any]:
    """``{"model", "model_options", "preprocessing"}`` of the package ``init_from`` (a path or an installed model's
    name), from its header alone (no torch): the settings a fine-tuning run takes when not given."""
    from ..package import _recorded_preprocessing, read_package_metadata, resolve_model

    path = resolve_model(init_from)
    meta = read_package_metadata(path)
    arch = meta["architecture"]
    # as a load resolves it: an older package recording part of it (or none) gets the defaults for the rest; a
    # setting this version does not know is refused saying what to do (a newer version's package)
    preprocessing = _recorded_preprocessing(meta, path)
    return {"model": arch["name"], "model_options": dict(arch.get("options") or {}),
            "preprocessing": preprocessing.to_dict() if hasattr(preprocessing, "to_dict") else dict(preprocessing)}


def check_start_given(init_from: Any, where: str = "--init-from") -> None:
    """Refuse an empty or blank ``init_from`` that was given (``--init-from ""``, an unset shell variable, or an
    empty ``init_from:`` in a config file): it trained from random weights without a word."""
    if init_from is not None and not str(init_from).strip():
        raise InputError(f"{where} is empty: give a model package (a file, or an installed model's name such as "
                         f"default), or leave the option out to train from random weights.")


def load_start_package(init_from: str, model: str, model_options: Dict[str, Any], preprocessing: Dict[str, Any],
                       in_channels: int, num_classes: int) -> Any:
    """The verified :class:`~..package.ModelPackage` ``init_from`` on the CPU, when its network and preprocessing
    are the run's (``model``, ``model_options``, ``preprocessing``: the run's resolved ``PreprocessingConfig`` as a
    dict, ``in_channels``, ``num_classes``); else :class:`InputError` naming each difference and the way out."""
    from ..package import load_model_package

    package = load_model_package(init_from, device="cpu")
    arch = package.architecture
    differences = []
    if arch["name"] != model:
        differences.append(f"architecture {arch['name']} (the run's: {model})")
    else:
        ours = resolved_options(model, in_channels, num_classes, model_options)
        theirs_options = dict(arch.get("options") or {})
        changed = sorted(key for key in set(ours) | set(theirs_options) if ours.get(key) != theirs_options.get(key))
        if changed:
            differences.append("model options " + ", ".join(f"{key} {theirs_options.get(key)!r} (the run's: "
                                                            f"{ours.get(key)!r})" for key in changed))
    if int(arch["in_channels"]) != int(in_channels) or int(arch["num_classes"]) != int(num_classes):
        differences.append(f"{arch['in_channels']} input channels and {arch['num_classes']} classes (the run's: "
                           f"{in_channels} and {num_classes})")
    theirs = package.preprocessing.to_dict() if hasattr(package.preprocessing, "to_dict") else \
        dict(package.preprocessing)
    changed = sorted(key for key in set(theirs) | set(preprocessing) if theirs.get(key) != preprocessing.get(key))
    if changed:
        shown = "; ".join(f"{key} {theirs.get(key)!r} (the run's: {preprocessing.get(key)!r})" for key in changed[:4])
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        differences.append(f"preprocessing {shown}{more}")
    if differences:
        raise InputError(f"--init-from '{init_from}' is another network than this run's: its " + "; its ".join(
            differences) + ". Its weights fit only its own network and input: leave out --model, --model-options "
            "and --preprocessing (and those keys of --config) to take the package's, or train from scratch without "
            "--init-from.")
    return package


def resolved_options(model: str, in_channels: int, num_classes: int, options: Dict[str, Any]) -> Dict[str, Any]:
    """The options a network ``model`` built with ``options`` records (its defaults filled in, as a package
    stores them), from a build on the meta device (no memory)."""
    from ..models import build_on_meta, model_config

    net = build_on_meta(model, in_channels=in_channels, num_classes=num_classes, **dict(options or {}))
    return dict(model_config(net)["options"])


def _texts(value: Any) -> List[str]:
    """The names of a metadata list (text or whole numbers), [] for anything else: ``training`` is free-form in a
    package (``{"patients": 12}`` ended a run in a TypeError after its data was cached)."""
    if not isinstance(value, (list, tuple)):
        return []
    return [str(v) for v in value if isinstance(v, (str, int)) and not isinstance(v, bool)]


TRAINED_ON_KEYS = ("patients", "cases", "voxel_sha256", "image_sha256")


def trained_on(metadata: Dict[str, Any]) -> Dict[str, List[str]]:
    """What a package's training used, with what every package it was fine-tuned from used (its
    ``training.init_from.trained_on``, recorded by :func:`start_record`): ``{"patients", "cases", "voxel_sha256",
    "image_sha256"}``, the digests from ``training.data_files`` of its training cases (not of cases it only validated
    on). A chain of fine-tunings keeps every patient: a package fine-tuned from one trained on patient X has seen X."""
    training = metadata.get("training") if isinstance(metadata, dict) else None
    if not isinstance(training, dict):
        return {key: [] for key in TRAINED_ON_KEYS}
    cases = _texts(training.get("cases"))
    found = {"patients": _texts(training.get("patients")), "cases": cases, "voxel_sha256": [], "image_sha256": []}
    files = training.get("data_files")
    for entry in files if isinstance(files, list) else []:
        if isinstance(entry, dict) and str(entry.get("case")) in set(cases):
            for key in ("voxel_sha256", "image_sha256"):
                if isinstance(entry.get(key), str) and entry[key]:
                    found[key].append(entry[key])
    start = training.get("init_from")
    earlier = start.get("trained_on") if isinstance(start, dict) else None
    if isinstance(earlier, dict):
        for key in TRAINED_ON_KEYS:
            found[key] += _texts(earlier.get(key))
    return {key: sorted(set(values)) for key, values in found.items()}


def patients_seen(trained: Dict[str, List[str]], cases: Sequence[Any],
                  voxel_digests: Optional[Dict[str, str]] = None,
                  file_hashes: Optional[Dict[str, Dict[str, Any]]] = None) -> Dict[str, str]:
    """``{patient id: how it was matched}`` of ``cases`` (this run's validation cases: ``case_id``, ``patient_id``)
    that ``trained`` (:func:`trained_on` of the start package) holds: ``"voxels"`` or ``"image file"`` (the voxel
    digest ``voxel_digests`` gives from the slice cache, or the image file's SHA-256 ``file_hashes`` gives,
    ``slice_cache.data_fingerprint``, among the start's training scans: a copy under another name), ``"patient
    id"`` (the same patient id: that patient, or another data set reusing the id), or ``"case name"`` (the same case
    name, used only when the start records no content to compare: two data sets' ``case0`` are not one scan when
    their voxels differ)."""
    patients, names = set(trained.get("patients") or []), set(trained.get("cases") or [])
    digests, images = set(trained.get("voxel_sha256") or []), set(trained.get("image_sha256") or [])
    seen = {}  # type: Dict[str, str]
    for case in cases:
        digest = (voxel_digests or {}).get(case.case_id)
        image = ((file_hashes or {}).get(case.case_id) or {}).get("image_sha256")
        content_known = bool((digests and digest) or (images and image))
        if (digest and digest in digests) or (image and image in images):
            how = "voxels" if digest and digest in digests else "image file"
        elif str(case.patient_id) in patients:
            how = "patient id"
        elif not content_known and str(case.case_id) in names:
            how = "case name"
        else:
            continue
        seen.setdefault(str(case.patient_id), how)
    return dict(sorted(seen.items()))


def start_record(package: Any, init_from: str, overlap: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """``training.init_from`` of the run's package: what it started from (the package's absolute path, as given,
    its name and weights SHA-256), what the start and its own starts trained on (:func:`trained_on`, so that a
    package fine-tuned from this one knows them too), and ``overlap`` (:func:`patients_seen` of the run's validation
    cases: ``validation_patients_it_trained_on`` and how each was matched)."""
    overlap = dict(overlap or {})
    return {"package": str(Path(package.path).resolve()), "given_as": str(init_from), "name": package.name,
            "weights_sha256": package.sha256, "library_version": package.metadata.get("library_version"),
            "trained_on": trained_on(package.metadata),
            "validation_patients_it_trained_on": sorted(overlap), "matched_by": overlap}


def overlap_text(overlap: Dict[str, str]) -> str:
    """``p1 (voxels), p2 (patient id)``: the validation patients the start package trained on, and how each was
    found."""
    return ", ".join(f"{patient} ({how})" for patient, how in overlap.items())


def check_same_start(saved: Optional[Dict[str, Any]], now: Dict[str, Any], source: Any) -> None:
    """Refuse resuming a fine-tuning run whose starting package's weights changed since (``saved``: the
    checkpoint's record, None for a run that started from scratch or an older checkpoint)."""
    if saved and saved.get("weights_sha256") != now.get("weights_sha256"):
        raise InputError(f"Checkpoint '{source}' is of a run that started from weights {saved.get('weights_sha256')}"
                         f" ({saved.get('package')}); --init-from '{now.get('given_as')}' now holds "
                         f"{now.get('weights_sha256')}. Resume with the package it started from, or pass --overwrite "
                         f"(without --resume) to start over.")
