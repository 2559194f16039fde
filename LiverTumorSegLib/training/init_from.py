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
from typing import Any, Dict, List, Optional, Sequence

from ..errors import InputError

log = logging.getLogger(__name__)


def package_settings(init_from: str) -> Dict[str, Any]:
    """``{"model", "model_options", "preprocessing"}`` of the package ``init_from`` (a path or an installed model's
    name), from its header alone (no torch): the settings a fine-tuning run takes when not given."""
    from ..package import read_package_metadata, resolve_model

    meta = read_package_metadata(resolve_model(init_from))
    arch = meta["architecture"]
    return {"model": arch["name"], "model_options": dict(arch.get("options") or {}),
            "preprocessing": dict(meta["preprocessing"])}


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
    import warnings

    import torch

    from ..models import build_model, model_config

    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # loading pretrained weights into meta tensors warns "no-op"
        net = build_model(model, in_channels=in_channels, num_classes=num_classes, **dict(options or {}))
    return dict(model_config(net)["options"])


def patients_seen(package: Any, cases: Sequence[Any], voxel_digests: Optional[Dict[str, str]] = None,
                  file_hashes: Optional[Dict[str, Dict[str, Any]]] = None) -> List[str]:
    """The patient ids of ``cases`` (this run's validation cases: ``case_id``, ``patient_id``) that the package's own
    training used, sorted: by patient or case name (``training.patients`` / ``training.cases`` of its metadata), or
    by content where the package records it for a training case (``training.data_files``: the voxel digest, which
    ``voxel_digests`` gives for this run's cases from the slice cache, or the image file's SHA-256, which
    ``file_hashes`` gives: ``slice_cache.data_fingerprint``), so a copy under another name is found too. A scan the
    package only validated on is not counted. [] when the package records none of these."""
    training = package.metadata.get("training") or {}
    trained_cases = {str(c) for c in training.get("cases") or []}
    trained_patients = {str(p) for p in training.get("patients") or []}
    digests, images = set(), set()
    for entry in training.get("data_files") or []:
        if isinstance(entry, dict) and str(entry.get("case")) in trained_cases:
            digests.update([str(entry["voxel_sha256"])] if entry.get("voxel_sha256") else [])
            images.update([str(entry["image_sha256"])] if entry.get("image_sha256") else [])
    seen = set()
    for case in cases:
        digest = (voxel_digests or {}).get(case.case_id)
        image = ((file_hashes or {}).get(case.case_id) or {}).get("image_sha256")
        if str(case.patient_id) in trained_patients or str(case.case_id) in trained_cases \
                or (digest and digest in digests) or (image and image in images):
            seen.add(str(case.patient_id))
    return sorted(seen)


def start_record(package: Any, init_from: str, overlap: Sequence[str] = ()) -> Dict[str, Any]:
    """``training.init_from`` of the run's package: what it started from, and ``overlap``
    (:func:`patients_seen` of its validation cases)."""
    return {"package": str(package.path), "given_as": str(init_from), "name": package.name,
            "weights_sha256": package.sha256,
            "library_version": package.metadata.get("library_version"),
            "validation_patients_it_trained_on": list(overlap)}


def check_same_start(saved: Optional[Dict[str, Any]], now: Dict[str, Any], source: Any) -> None:
    """Refuse resuming a fine-tuning run whose starting package's weights changed since (``saved``: the
    checkpoint's record, None for a run that started from scratch or an older checkpoint)."""
    if saved and saved.get("weights_sha256") != now.get("weights_sha256"):
        raise InputError(f"Checkpoint '{source}' is of a run that started from weights {saved.get('weights_sha256')}"
                         f" ({saved.get('package')}); --init-from '{now.get('given_as')}' now holds "
                         f"{now.get('weights_sha256')}. Resume with the package it started from, or pass --overwrite "
                         f"(without --resume) to start over.")
