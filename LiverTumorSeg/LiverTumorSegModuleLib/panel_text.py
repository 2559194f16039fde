"""Texts the module panel shows: model facts, GPU, preprocessing, and the result summary. Plain strings."""
import math
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence


def validation_dice(validation: Dict[str, Any]) -> List[str]:
    """``"<metric> 0.953"`` for every numeric validation entry whose name contains 'dice' (nested dicts too);
    ``"<metric> not measured"`` for one that is null (the default package's ``dice_tumor``: no real tumor labels),
    which was left out, so the panel showed only the liver's Dice with no word that the tumor's is unknown. A
    whole-volume block none of whose validation cases has a reference tumor gives its tumor Dice as not measured:
    there it says only whether any tumor was predicted (1.000 none, 0.000 some), which read as a measured Dice."""
    found = []

    def walk(prefix: str, value: Any, no_reference_tumor: bool = False) -> None:
        if isinstance(value, dict):
            no_reference_tumor = no_reference_tumor or _no_case_has_reference_tumor(value)
            for key in sorted(value):
                walk(f"{prefix} {key}".strip(), value[key], no_reference_tumor)
        elif "dice" not in prefix.lower():
            return
        elif no_reference_tumor and "tumor" in prefix.lower():
            found.append(f"{prefix.replace('_', ' ')} not measured (no validation case has a reference tumor)")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found.append(f"{prefix.replace('_', ' ')} {float(value):.3f}")
        elif value is None:
            found.append(f"{prefix.replace('_', ' ')} not measured")

    walk("", validation or {})
    return found


def _no_case_has_reference_tumor(block: Dict[str, Any]) -> bool:
    """Whether a validation block's ``cases`` (a training run's whole-volume rows) all record
    ``reference_has_tumor`` false; False without such rows."""
    cases = block.get("cases")
    return isinstance(cases, list) and bool(cases) and all(
        isinstance(c, dict) and c.get("reference_has_tumor") is False for c in cases)


def _file_name(path: str) -> str:
    """The file name of ``path`` as a scene saved it, on any system (a Windows path too)."""
    return os.path.basename(str(path).replace("\\", "/"))


def model_not_installed_text(model_path: str) -> str:
    """The panel's note that the scene's model (``model_path``, a package file path saved with the scene, e.g. from
    another computer) is not installed here and the default model is selected instead: the switch was written to the
    Python console only, so a reader could segment with another model than the scene's without a word."""
    name = _file_name(model_path) or str(model_path)
    return (f"The scene's model '{name}' is not installed here, so the default model is selected. To use that model, "
            f"add its file with 'Add model file...' and pick it in the list.")


def _looks_like_path(text: str) -> bool:
    """A single file path such as '/root/out/cases.csv' (no spaces, has a separator or a data-list suffix)."""
    text = text.strip()
    return " " not in text and ("/" in text or "\\" in text or text.lower().endswith((".csv", ".json", ".yaml")))


def training_data_text(training: Dict[str, Any]) -> str:
    """One line about the training data from a package's ``training`` block ('' when absent).

    Prefers a written description; a file path (the training machine's data list, meaningless to a user) is
    replaced by the number of training cases when the block has one.
    """
    if not training:
        return ""
    for key in ("data_description", "description", "dataset", "data_summary", "summary", "data"):
        value = training.get(key)
        if isinstance(value, str) and value and not _looks_like_path(value):
            return value
        if isinstance(value, dict) and value:
            return ", ".join(f"{k}: {v}" for k, v in sorted(value.items()) if not isinstance(v, (dict, list)))
    count = training.get("num_train_cases")
    if count is None and isinstance(training.get("cases"), list):
        count = len(training["cases"])
    return f"{int(count)} training case(s)" if isinstance(count, (int, float)) else ""


def model_lesion_probability(metadata: Dict[str, Any]) -> float:
    """The lesion confidence threshold (0..1) the panel shows for a model: the one its package records as its own
    (``postprocessing.min_lesion_probability``), else the library's default, 0.65."""
    from LiverTumorSegLib.inference.postprocess import PostprocessingOptions, with_min_lesion_probability
    from LiverTumorSegLib.package import package_min_lesion_probability

    return with_min_lesion_probability(PostprocessingOptions(), package_min_lesion_probability(metadata)
                                       ).min_lesion_probability


def describe_model(metadata: Dict[str, Any]) -> str:
    """Description, training data and validation Dice of a model package (``read_package_metadata``)."""
    lines = []
    if metadata.get("error"):
        return f"This model cannot be used: {metadata['error']}"
    if metadata.get("description"):
        lines.append(str(metadata["description"]))
    arch = metadata.get("architecture")
    if isinstance(arch, dict) and arch.get("name"):
        lines.append(f"Network: {arch['name']} ({arch.get('in_channels', '?')} input channels)")
    elif isinstance(arch, str):
        lines.append(f"Network: {arch}")
    data = training_data_text(metadata.get("training") or {})
    if data:
        lines.append(f"Training data: {data}")
    validation = metadata.get("validation") or {}
    dice = validation_dice(validation)
    method = validation.get("method") if isinstance(validation.get("method"), str) else ""
    lines.append("Validation" + (f" ({method.split(':')[0].strip()})" if method else "") + ": "
                 + ("; ".join(dice) if dice else "no Dice reported"))
    from LiverTumorSegLib.package import package_lesion_probability_statistic, package_min_lesion_probability

    own = package_min_lesion_probability(metadata)  # read_package_metadata's metadata: validated already
    if own is not None:
        statistic = package_lesion_probability_statistic(metadata) or "mean"
        lines.append(f"Lesion confidence threshold: {own:g} of each lesion's {statistic} tumor probability "
                     f"(this model's own)")
    return "\n".join(lines)


def describe_gpu(info: Optional[Dict[str, Any]]) -> str:
    """``info`` from ``LiverTumorSegLib.inference.device.gpu_info`` (name, total_bytes, free_bytes)."""
    if not info:
        return "No CUDA GPU available: segmentation runs on the CPU (minutes per CT)."
    gib = 1024.0 ** 3
    return (f"GPU: {info['name']}, {info['total_bytes'] / gib:.1f} GiB memory "
            f"({info.get('free_bytes', 0) / gib:.1f} GiB free)")


def _channel_text(channel: Dict[str, Any]) -> str:
    kind = channel.get("kind")
    if kind == "window":
        return f"window L{channel['level']:g}/W{channel['width']:g} HU" \
            if isinstance(channel.get("level"), (int, float)) else f"window {channel.get('preset', '?')}"
    if kind == "hist_scaled":
        return "histogram-scaled"
    if kind == "zscore":
        return "z-score"
    return str(kind)


def _context_distance(preprocessing: Dict[str, Any]) -> str:
    """How far from the centre the 2.5D neighbours are kept (context_min_mm / context_max_mm), or ""."""
    low, high = preprocessing.get("context_min_mm"), preprocessing.get("context_max_mm")
    if low and high:
        return f" {float(low):g}-{float(high):g} mm from the centre"
    if low:
        return f" at least {float(low):g} mm from the centre"
    return f" at most {float(high):g} mm from the centre" if high else ""


DAMAGED_PREPROCESSING_TEXT = ("cannot be read: {problem}. The model file is damaged or was edited; Segment will refuse "
                              "it. Add the model again from its original file.")


def describe_preprocessing(preprocessing: Dict[str, Any]) -> str:
    """One line: intensity channels, 2.5D context and in-plane resampling of a preprocessing dict. A dict the library
    would refuse (a package's header is read without checking it: a window without its width, a target_size of three
    numbers) gets :data:`DAMAGED_PREPROCESSING_TEXT` with the library's own reason; it raised in the panel's
    model-changed slot, leaving the previous model's line on show."""
    if not preprocessing:
        return "unknown"
    try:
        return _preprocessing_line(preprocessing)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        return DAMAGED_PREPROCESSING_TEXT.format(problem=_preprocessing_problem(preprocessing, exc))


def _preprocessing_problem(preprocessing: Any, fallback: BaseException) -> str:
    """Why the library refuses ``preprocessing`` (its PreprocessingConfigError, without the final stop), else
    ``fallback``'s text."""
    try:
        from LiverTumorSegLib.preprocessing import PreprocessingConfig
    except ImportError:  # its dependencies not installed in Slicer's Python yet
        return str(fallback).rstrip(".")
    try:
        PreprocessingConfig.from_dict(preprocessing)
    except Exception as exc:  # noqa: BLE001 - whatever the library says of it is the reason shown
        return str(exc).rstrip(".")
    return str(fallback).rstrip(".")


def _preprocessing_line(preprocessing: Dict[str, Any]) -> str:
    """:func:`describe_preprocessing` of a dict; TypeError, ValueError, KeyError or AttributeError for one whose
    fields have the wrong types or shapes."""
    parts = [", ".join(_channel_text(c) for c in preprocessing.get("channels", []))]
    context = int(preprocessing.get("context_slices", 0) or 0)
    parts.append(f"2.5D context +/-{context} slice(s){_context_distance(preprocessing)}" if context
                 else "single slices")
    if preprocessing.get("target_spacing_mm"):
        parts.append(f"{float(preprocessing['target_spacing_mm']):g} mm pixels")
    elif preprocessing.get("target_size"):
        h, w = preprocessing["target_size"]
        parts.append(f"{h}x{w} pixels")
    if preprocessing.get("equalize"):
        parts.append(f"{preprocessing['equalize']} equalization")
    return "; ".join(p for p in parts if p)


def lesion_number_of_cell(text: Any) -> Optional[int]:
    """The lesion number shown in a lesion table's *Lesion* cell (``"3"``, or ``"3.0"`` from a table saved and loaded
    again), or None for a cell that holds no whole number (empty, text, ``inf``, ``nan``, ``3.5``: a table edited by
    hand or by a script). ``int(float("inf"))`` raised OverflowError in the table's selection slot, which caught only
    TypeError and ValueError."""
    try:
        number = float(str(text).strip())
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) and number == int(number) else None


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


PANEL_SWITCHES = {
    "--keep-liver-above-lungs": "Remove liver above the lung bases (heart, chest)",
    "--keep-all-liver-components": "Keep only the largest liver component",
    "--allow-tumor-outside-liver": "Remove tumor outside the liver",
    "--keep-tubular-lesions": "Tube-shaped tumors become liver (vessels)",
    "--no-body-size-scaling": "Enlarge a child-sized body for the network",
}
"""The command-line switch a post-processing (or body-size) warning names (``run again with --flag``) -> the
Advanced checkbox that does the same in the panel, unticked (the labels are the .ui's)."""
NO_PANEL_CONTROL = ("--keep-liver-in-air",)
"""Switches a post-processing warning may name that the panel has no control for: the panel says so instead of
showing a flag its user cannot give."""


def _panel_wording(text: str) -> str:
    """A child's advice in the panel's words: its switches and controls instead of command-line flags."""
    for flag, label in PANEL_SWITCHES.items():
        text = text.replace(f"run again with {flag}",
                            f'segment again with "{label}" unticked (under Preprocessing and post-processing)')
    text = text.replace("a larger --tumor-liver-margin-mm keeps it",  # no panel control
                        "the command line's `livertumorseg segment --tumor-liver-margin-mm` with a larger margin "
                        "keeps it (the panel has no control for it)")
    text = text.replace("run again with --min-lesion-probability 0",  # a spin box, not a checkbox
                        'segment again with "Lowest tumor probability of a small lesion" set to 0 (under '
                        'Preprocessing and post-processing)')
    for flag in NO_PANEL_CONTROL:
        text = text.replace(f"run again with {flag}", f"check the result: the panel has no control for this step "
                                                      f"(the command line's `livertumorseg segment {flag}` turns it "
                                                      f"off)")
    for flag_words, panel_words in NO_PANEL_SETTING_ADVICE + EMPTY_SEGMENTS_PANEL_WORDS:
        text = text.replace(flag_words, panel_words)
    text = text.replace("(--device gpu)", '(Device "GPU")')  # the child's "A GPU ... was requested" without one
    return text.replace("use --device cpu", 'choose "CPU" as the Device')  # the child's GPU out-of-memory advice


NO_PANEL_SETTING_ADVICE = (
    # the child's out-of-memory error (segment --progress json): the panel has no batch size setting
    ("; --batch-size 1 lowers what the network needs",
     "; the command line's `livertumorseg segment --batch-size 1` (the panel has no control for it) lowers what the "
     "network needs"),
    # the network's NaN / Inf under bf16 (the default precision on GPUs): the panel has no precision control
    ("Run it with --precision fp32",
     "Run it with the command line's `livertumorseg segment --precision fp32` (the panel has no control for it)"),
)
"""Advice of the child that names a setting the panel does not offer (``the flag's words``, ``the panel's words``):
the panel showed a bare command-line flag its user could not give."""


PACKAGE_REFUSAL_PANEL_WORDS = (
    # package.py's refusals of a file that is not a LiverTumorSeg package, as "Add model file..." shows them
    ("('livertumorseg models' lists the installed ones; 'livertumorseg train' makes one)",
     "(the Model list shows the installed ones; the command line's `livertumorseg train` makes one)"),
    ("('livertumorseg models' lists the installed ones)", "(the Model list shows the installed ones)"),
    ("(with --backend onnx, segment runs a package's network on ONNX Runtime itself)",
     "(the command line's `livertumorseg segment --backend onnx` runs a package's network on ONNX Runtime itself; "
     "the panel runs it on PyTorch)"),
)
"""A model file's refusal (``LiverTumorSegLib.package``) in the panel's words: 'Add model file...' showed command-line
advice ('livertumorseg models' lists..., --backend onnx) to a user who has the Model list and no backend setting."""


def package_refusal_text(text: str) -> str:
    """Why a file given to 'Add model file...' is no model package, in the panel's words
    (:data:`PACKAGE_REFUSAL_PANEL_WORDS`)."""
    for flag_words, panel_words in PACKAGE_REFUSAL_PANEL_WORDS:
        text = text.replace(flag_words, panel_words)
    return text


USER_MODELS_FOLDER_ADVICE = ("Set the environment variable LIVERTUMORSEG_MODELS_DIR to a folder you can write to "
                             "and start Slicer again, or fix that folder's permissions.")
"""What to do about a user models folder that cannot be written: the panel has no control for that folder."""


def user_models_folder_not_writable_text(folder: str, reason: str) -> str:
    """Why 'Add model file...' could not install the package picked: its folder cannot be written."""
    return (f"Cannot add the model: the user models folder '{folder}' cannot be written ({reason}). "
            f"{USER_MODELS_FOLDER_ADVICE}")


def add_model_read_only_warning_text(folder: str, reason: str) -> str:
    """The warning 'Add model file...' shows before its file dialog where the user models folder cannot be written:
    only a package already installed there can be chosen (that needs no writing), any other would be refused."""
    return (f"The user models folder '{folder}' cannot be written ({reason}), so only a model already installed "
            f"there can be chosen; any other file cannot be added. {USER_MODELS_FOLDER_ADVICE}")


EMPTY_SEGMENTS_PANEL_WORDS = (
    # measure's warnings for an empty label map, which the panel's "Update lesion table" hands over from the segments
    ("the label map holds no liver and no tumor (every voxel background): its liver volume 0.0 mL and empty lesion "
     "table describe no segmentation; check that it is the right file (segment writes 1 = liver, 2 = tumor)",
     "the Liver and Liver tumor segments are empty: the liver volume 0.0 mL and the empty lesion table describe no "
     "segmentation; check that this is the segmentation you meant (its segments may have been erased), or click "
     "Segment to segment the CT again"),
    ("the label map holds tumor but no liver label (1) (an empty Liver segment?)",
     "the Liver tumor segment holds voxels but the Liver segment is empty"),
)
"""Warnings of the measure child about the label map it was handed, in the panel's words: its user has segments,
not a file of labels 1 and 2 that 'segment' wrote, and was told to check 'that it is the right file'."""


ALIGN_ON_CT = '"Align on the CTs"'
"""The comparison's alignment checkbox (its label in the panel)."""

_FOLLOWUP_PANEL_WORDS = (
    # the panel always hands over both CTs, and has one checkbox for the alignment (CT or liver masks; no "none")
    ("give both CTs (--baseline-ct, --followup-ct) or --alignment none", f"tick {ALIGN_ON_CT}"),
    ("or use --alignment none", f"or try the other alignment ({ALIGN_ON_CT} ticked or unticked)"),
    ("try another alignment (--alignment ct|liver|none)", f"try the other alignment ({ALIGN_ON_CT} ticked or "
                                                          f"unticked)"),
    # the panel hands over segments, not a file: 'the wrong file' told of a file its user never chose
    (" label map holds no liver and no tumor (every voxel 0): a failed segmentation or the wrong file;",
     " segmentation's Liver and Liver tumor segments are empty (a failed segmentation, or segments erased);"),
    # the panel's field for --previous (followup_job.PREVIOUS_FIELD_NAME), named where the child read the report
    ("The previous change report was made against another baseline",
     "The Previous follow-up report (change.json) was made against another baseline"),
    ("Give the change.json of a follow-up compared with this baseline.",
     "Choose in that field the change report of a follow-up compared with this baseline, or clear the field."),
)


def followup_text(text: str) -> str:
    """A follow-up child's error or warning in the panel's words: its alignment checkbox instead of the command
    line's ``--alignment`` and CT options."""
    for flag_words, panel_words in _FOLLOWUP_PANEL_WORDS:
        text = text.replace(flag_words, panel_words)
    return text


def _named_as_volume(text: str, input_path: str, volume_name: str) -> str:
    """``text`` with the file the child read (often a temporary NIfTI, gone by now) named as the volume."""
    if not volume_name:
        return text
    # the child prints the path as pathlib writes it: on Windows with backslashes, where Qt gave C:/... forms
    forms = sorted({input_path, input_path.replace("/", "\\"), input_path.replace("\\", "/")} - {""}, key=len,
                   reverse=True)
    for form in forms:
        text = text.replace(f"'{form}'", f"Volume '{volume_name}'").replace(form, volume_name)
    return text


def error_text(text: str, input_path: str = "", volume_name: str = "") -> str:
    """A child's error as the panel shows it: the volume's name instead of the temporary file it was handed over
    as, and no command-line switch the panel does not have (it segments CT in Hounsfield units only)."""
    import re

    text = re.sub(ALLOW_NON_HU_ADVICE, "", _named_as_volume(str(text), input_path, volume_name))
    return _panel_wording(text)


ALLOW_NON_HU_ADVICE = (r",? or pass --allow-non-hu to proceed|; if its values are not HU, pass --allow-non-hu to proceed"
                       r"|; only if its values are HU after all, pass --allow-non-hu to segment them as stored "
                       r"\(shifted or scaled values give meaningless labels\)")
"""The child's advice to pass --allow-non-hu, which the panel has no control for: ', or pass ... to proceed' (values
that do not look like HU) and '; if its values are not HU, pass ... to proceed' (a volume of air alone, which the
panel showed with the switch)."""


def result_warnings(report: Dict[str, Any], input_path: str = "", volume_name: str = "") -> List[str]:
    """The report's ``warnings`` (input checks such as a tilted grid or thick slices, an implausible liver
    volume, what post-processing took out) with the file the child read (``input_path``, often a temporary
    NIfTI) named as the volume and command-line switches named as the panel's checkboxes."""
    return [_named_as_volume(_panel_wording(str(warning)), input_path, volume_name)
            for warning in report.get("warnings") or []]


def summary_text(report: Dict[str, Any], warnings: Sequence[str] = ()) -> str:
    """``Liver 1520.0 mL (tumors included), tumor 12.50 mL (burden 0.82 %), 2 lesions, RECIST sum of diameters
    46.5 mm`` from a lesion report (the report's liver volume is the whole liver, label >= 1, and the segment "Liver"
    the liver without its tumors: "Liver 709.2 mL" stood beside a "Liver" segment of 690.8 mL; tumor to 0.01 mL: a
    0.04 mL lesion read "tumor 0.0 mL"; a tumor volume or burden above zero that still rounds to zero reads "<0.01": a
    one-voxel lesion read "tumor 0.00 mL (burden 0.00 %), 1 lesion"; the sum only when there are target lesions),
    then one ``Warning: ...`` line per warning."""
    from LiverTumorSegLib.mrml import report_summary

    return _summary_text(report_summary(report), warnings)


NO_RESULT = "No result yet."
"""The results summary before a run (also the .ui's initial text)."""


def table_summary_text(table_node: Any) -> str:
    """:func:`summary_text` from a lesion table's ``LiverTumorSeg.*`` attributes (``mrml.report_summary``, which
    ``create_lesion_table_node`` stores): what the panel shows beside a table of a scene loaded from disk, which
    has no run outcome ("No result yet." stood beside a table full of lesions), then one ``Warning: ...`` line per
    warning of the run that filled it (``mrml.lesion_table_warnings``: they were gone after the scene was reloaded)."""
    from LiverTumorSegLib.mrml import TABLE_ATTRIBUTE_PREFIX, lesion_table_warnings, report_summary

    keys = report_summary({})
    return _summary_text({key: table_node.GetAttribute(TABLE_ATTRIBUTE_PREFIX + key) if table_node is not None
                          else None for key in keys}, lesion_table_warnings(table_node))


def change_table_summary_text(table_node: Any) -> str:
    """The response and sum-of-diameters lines of a follow-up table from its ``LiverTumorSeg.*`` attributes
    (``mrml.create_change_table_node`` stores them): what the compare section shows beside a table of a scene
    loaded from disk, which has no run outcome. '' without a table or a response."""
    from LiverTumorSegLib.followup import response_line, sum_of_diameters_line
    from LiverTumorSegLib.mrml import TABLE_ATTRIBUTE_PREFIX

    def attribute(key: str) -> str:
        return (table_node.GetAttribute(TABLE_ATTRIBUTE_PREFIX + key) or "") if table_node is not None else ""

    def millimetres_or_percent(key: str) -> Optional[float]:
        value = _number(attribute("sum_of_diameters_" + key))
        return None if math.isnan(value) else value

    if not attribute("response"):
        return ""
    sums = {key: millimetres_or_percent(key) for key in ("baseline_mm", "followup_mm", "change_percent")}
    lines = [response_line(attribute("response"), attribute("response_reason")), sum_of_diameters_line(sums)]
    return "\n".join(line for line in lines if line)


def _fixed(value: float, decimals: int) -> str:
    """``value`` to ``decimals`` places; above zero but rounding to zero: ``<0.01`` (the panel never says 0.00 of
    something the report has); -0.0 as 0.0; NaN (a hand-edited table attribute) as 'unknown'."""
    if math.isnan(value):
        return "unknown"
    smallest = 10.0 ** -decimals
    if 0 < value < smallest / 2:
        return f"<{smallest:.{decimals}f}"
    return f"{value + 0.0:.{decimals}f}".replace("-0." + "0" * decimals, "0." + "0" * decimals)


def _summary_text(numbers: Dict[str, Any], warnings: Sequence[str] = ()) -> str:
    """The summary line from :func:`LiverTumorSegLib.mrml.report_summary`'s numbers (or their attribute texts)."""
    liver, tumor, burden, count, diameters = (_number(numbers.get(key)) for key in (
        "liver_volume_ml", "tumor_volume_ml", "tumor_burden_percent", "lesion_count", "recist_sum_of_diameters_mm"))
    if math.isnan(liver):
        return NO_RESULT
    count = 0 if math.isnan(count) else int(count)
    line = (f"Liver {_fixed(liver, 1)} mL (tumors included), tumor {_fixed(tumor, 2)} mL "
            f"(burden {_fixed(burden, 2)} %), {count} lesion{'' if count == 1 else 's'}")
    if not math.isnan(diameters) and diameters > 0:
        line += f", RECIST sum of diameters {diameters:.1f} mm"
    return "\n".join([line] + [f"Warning: {w}" for w in warnings])


def comparison_text(change: Dict[str, Any]) -> str:
    """What the compare section shows after a comparison: the response, the target lesions' sum of diameters (when
    there are targets), the alignment, then one ``Warning: ...`` line per warning of ``change`` (the follow-up
    command's report). Its first three summary lines were shown, in which the warnings come second: with two
    warnings the sum of diameters and the alignment were not shown, and a third warning was dropped unseen."""
    from LiverTumorSegLib.followup import change_summary_lines

    lines = [line for line in change_summary_lines(dict(change, warnings=[])) if not line.startswith(" ")]
    reference = reference_line(change)
    return "\n".join(lines + ([reference] if reference else [])
                     + [f"Warning: {warning}" for warning in change.get("warnings") or []])


def reference_line(change: Dict[str, Any]) -> str:
    """What the response was judged from, as the report's ``response_criteria`` says it (the baseline alone, the
    nadir given, the nadir of the previous follow-up report, after a complete response), with the nadir in mm and
    what the previous follow-up report (``previous``) held: the panel showed the response without it, so a reader of
    a third scan could not see whether progression was judged from the nadir or from the baseline alone. '' for a
    report without that text."""
    from LiverTumorSegLib.followup import TIME_POINT_NOTE

    head = "RECIST 1.1 on the liver lesions of the label maps; "
    criteria = str(change.get("response_criteria") or "")
    if not criteria.startswith(head):
        return ""
    line = "Reference: " + criteria[len(head):].split("; " + TIME_POINT_NOTE)[0]
    nadir = (change.get("sum_of_diameters") or {}).get("nadir_mm")
    if nadir is not None:
        line += f" (nadir {_fixed(float(nadir), 1)} mm)"
    previous = change.get("previous")
    if isinstance(previous, dict):
        def mm(value: Any) -> str:
            return "none" if value is None else f"{_fixed(float(value), 1)} mm"
        line += (f"; previous follow-up report: response {previous.get('response') or 'unknown'}, its follow-up "
                 f"sum {mm(previous.get('followup_mm'))}, its nadir {mm(previous.get('nadir_mm'))}")
    return line


def not_selected_text(ct_name: str, segmentation_name: str, table_name: str) -> str:
    """The line above the summary of a run whose CT is no longer the panel's input (changed while it ran): the
    summary would otherwise stand under the other CT, beside its empty lesion table, as if it were that CT's."""
    return (f"Result of the CT '{ct_name}', which is no longer the selected input: see the segmentation "
            f"'{segmentation_name}' and the table '{table_name}'.")


def comparison_not_selected_text(names: Sequence[str], table_name: str) -> str:
    """The line above the response of a comparison whose segmentations or CTs are no longer the ones the compare
    section shows (another pair chosen while it ran): ``names`` are the compared baseline segmentation, baseline CT,
    follow-up segmentation and follow-up CT. The response otherwise stood under the newly chosen pair as if it were
    theirs."""
    baseline, baseline_ct, followup, followup_ct = names
    return (f"Comparison of '{baseline}' (on '{baseline_ct}') with '{followup}' (on '{followup_ct}'), which are no "
            f"longer the selected segmentations and CTs: see the table '{table_name}'.")


def replace_question(segmentation_name: str, split_off_names: Sequence[str] = (), has_segments: bool = True,
                     segment_names: Sequence[str] = (), edited_names: Sequence[str] = ()) -> str:
    """The confirmation before a run writes into a segmentation that already has Liver / Liver tumor segments, or
    pieces Segment Editor's Islands effect split off them (``split_off_names``, "Liver tumor_2"...), which the run
    replaces too: kept, they would be counted as tumor beside the new result by *Update lesion table*.
    ``has_segments``: whether the Liver / Liver tumor segments themselves are there (False: only pieces are, the
    segments having been deleted or renamed; the question then does not say it has them).
    ``segment_names``: the names those segments have now (``mrml.segment_names``). A run replaces this module's
    segments by their IDs, also after the user renamed them ("Metastasis 4 (confirmed)"): the question names such
    segments, which "Liver / Liver tumor segments ... its other segments are kept" did not let a reader recognise.
    ``edited_names``: those of them edited since the run that made them (``mrml.segments_edited_since_result``): the
    question says the edits are lost, which "Replace them?" alone did not tell a reader who corrected the outline."""
    pieces = ""
    if split_off_names:
        shown = ", ".join(repr(n) for n in split_off_names[:8]) + (" ..." if len(split_off_names) > 8 else "")
        source = "them" if has_segments else "an earlier result"
        pieces = f"{len(split_off_names)} piece(s) split off {source} ({shown})"
    if not has_segments and pieces:
        return (f"'{segmentation_name}' has {pieces}, which are removed and replaced with the new result so that it "
                f"is not counted with pieces of the old one. Replace them? This cannot be undone; its other segments "
                f"are kept. (To keep them, choose 'Create new segmentation' as the output.)")
    if pieces:
        pieces = (f" and {pieces}, which are removed with them so that the new result is not counted with pieces of "
                  f"the old one")
    renamed = [name for name in segment_names if name.strip().lower() not in ("liver", "liver tumor")]
    if renamed:  # this module's segments under names the user gave them
        pieces = f" (among them {', '.join(repr(n) for n in renamed)}, renamed)" + pieces
    edited = ""
    if edited_names:
        one = len(edited_names) == 1
        edited = (f" {', '.join(repr(n) for n in edited_names)} {'was' if one else 'were'} edited after the run that "
                  f"made {'it' if one else 'them'}: replacing {'it' if one else 'them'} loses those edits.")
    return (f"'{segmentation_name}' already has Liver / Liver tumor segments{pieces}.{edited} Replace them? This "
            f"cannot be undone; its other segments are kept. (To keep them, choose 'Create new segmentation' as the "
            f"output.)")


def another_ct_question(segmentation_name: str, its_ct: str, input_ct: str, replace_text: str = "") -> str:
    """The confirmation before a run writes the CT ``input_ct``'s result into a segmentation made on the CT ``its_ct``
    (chosen as the output by hand: choosing another input CT sets the output back to 'Create new'). The segmentation's
    Liver / Liver tumor are that CT's result, and its lesion table that CT's lesions, which the run replaced (or the
    run took the segmentation over, its source volume changed) after no more than the plain replace question.
    ``replace_text``: :func:`replace_question`'s text when the run replaces segments, '' when it replaces none."""
    lead = f"'{segmentation_name}' was made on the CT '{its_ct}', not on '{input_ct}', the CT to segment."
    if replace_text:
        return f"{lead} {replace_text}"
    return (f"{lead} Segment '{input_ct}' into it? Its segments are kept, and it records '{input_ct}' as its CT from "
            f"then on. (To leave it as it is, choose 'Create new segmentation' as the output.)")


SEGMENT_TOOLTIP = "Segment the liver and liver tumors. Becomes Cancel while running."
"""The Segment button's tooltip when it can be clicked (also the .ui's)."""


def segment_button_state(running: bool, ready: bool, measuring: bool, not_ct_reason: str = "",
                         installing: bool = False) -> tuple:
    """``(enabled, tooltip)`` of the Segment button. ``running``: a segmentation runs (the button cancels it);
    ``ready``: a CT volume and a model are selected and no packages are being installed; ``measuring``: a lesion
    table update runs; ``not_ct_reason``: why the selected volume is no CT (a label map, this module's tumor
    probability map, which the CT selector lists), shown instead of a button that fails when clicked;
    ``installing``: the Python packages are being installed. A button greyed out while the lesion table was updated
    or the packages installed said 'Segment liver and tumors' or 'Select a CT volume and a model' (with both
    selected)."""
    if running:
        return True, "Stop the running segmentation (the scene is not changed)"
    if installing:
        return False, "Wait for the Python packages to be installed"
    if ready and not_ct_reason:
        return False, not_ct_reason
    if ready and measuring:
        return False, "Wait for the lesion table update to end (or cancel it)"
    return bool(ready), SEGMENT_TOOLTIP if ready else "Select a CT volume and a model"


MEASURE_TOOLTIP = ("After editing the Liver / Liver tumor segments (Segment Editor): measure them again and refill the "
                   "lesion table")
"""The *Update lesion table from segments* button's tooltip when it can be clicked (also the .ui's)."""


COMPARE_TOOLTIP = "Align the follow-up to the baseline, match lesions, RECIST 1.1 response"
"""The compare section's button's tooltip; while a comparison runs the button reads Cancel, with
:data:`COMPARE_CANCEL_TOOLTIP`."""
COMPARE_CANCEL_TOOLTIP = "Stop the comparison (the scene is not changed)"
PREVIOUS_CHANGE_REPORT_TOOLTIP = (
    "The change report (change.json) of the previous follow-up compared with this same baseline, saved with 'Save "
    "change report...' or written by 'livertumorseg followup' (its --previous): RECIST 1.1 then judges progression "
    "from the nadir it carries (the smaller of its nadir and its follow-up sum) and takes its CR as a complete "
    "response. Empty: the nadir field and the complete-response box decide. Not with either of them")
"""The compare section's *Previous follow-up report (change.json)* field's tooltip."""
SAVE_CHANGE_REPORT_TOOLTIP = (
    "Save the change report (change.json) of the comparison shown to a file, to give it as 'Previous follow-up "
    "report' when the next follow-up is compared with this baseline (the comparison's own copy is deleted with its "
    "temporary folder; the report is saved with the scene, with its table)")
"""The compare section's *Save change report...* button's tooltip."""
SAVE_CHANGE_REPORT_WAIT_TOOLTIP = ("Wait for the comparison to end (or cancel it): the change report shown is the "
                                   "previous comparison's, and this one's replaces it")
"""The *Save change report...* button's tooltip while a comparison runs (the button is greyed out)."""
COMPARISON_RUNNING_NOTHING_SAVED = ("Nothing saved: a comparison is running and its change report will replace the "
                                    "one shown; save when it has ended (or cancel it).")
"""Refused by *Save change report...* while a comparison runs (it saved the previous comparison's report, and the
run's end wiped the 'saved' line)."""


def save_change_report_button_state(comparing: bool) -> tuple:
    """``(enabled, tooltip)`` of the *Save change report...* button; ``comparing``: a comparison runs. Clickable while
    one ran, it saved the report of the table shown before the run and its 'saved' line was then replaced."""
    if comparing:
        return False, SAVE_CHANGE_REPORT_WAIT_TOOLTIP
    return True, SAVE_CHANGE_REPORT_TOOLTIP
NO_CHANGE_REPORT_TO_SAVE = ("No comparison to save: press Compare first (the change table shown, if any, keeps no "
                            "report: it was made by an earlier version, or its 'change report' text node was deleted "
                            "or its text edited).")
NOT_A_CHANGE_REPORT_TO_SAVE = ("Nothing saved: the report the change table shown keeps is not a followup change report "
                               "(no response and sum_of_diameters: its 'change report' text node was edited), so it "
                               "could not be given as the next follow-up's Previous follow-up report; press Compare "
                               "again to make a new one.")
"""*Save change report...* on a table whose kept report is JSON but no change report (its text node edited by hand):
said before the save dialog opens, as the previous-report field would refuse the file later."""


def change_report_saved_text(path: str) -> str:
    """The line under the comparison's result once its change report was saved."""
    return (f"Change report saved: {path} (give it as 'Previous follow-up report' when comparing the next follow-up "
            f"with this baseline).")


def measure_button_state(measuring: bool, running: bool, has_input: bool, has_segments: bool, own_ct: bool,
                         installing: bool = False) -> tuple:
    """``(enabled, tooltip)`` of the *Update lesion table from segments* button. ``measuring``: an update runs (the
    button reads Cancel and stops it); ``running``: a segmentation runs; ``has_input``: a CT is selected;
    ``has_segments``: the output segmentation has this module's Liver / Liver tumor segments; ``own_ct``: it was made
    on (or for) the selected CT; ``installing``: the Python packages are being installed. A greyed-out button said
    only what it does when clicked, and the Cancel it becomes while measuring said the same."""
    if measuring:
        return True, "Stop updating the lesion table (the table stays as it was)"
    if running:
        return False, "Wait for the running segmentation to end"
    if installing:
        return False, "Wait for the Python packages to be installed"
    if not has_input:
        return False, "Select the CT volume the segmentation was made on"
    if not has_segments:
        return False, ("Segment first, or select as the output a segmentation with this module's Liver / Liver "
                       "tumor segments")
    if not own_ct:
        return False, ("The output segmentation was made on another CT: select that CT as the CT volume (measured on "
                       "this one, the lesions would get its HU)")
    return True, MEASURE_TOOLTIP


def done_text(seconds: float, warnings: Sequence[str] = ()) -> str:
    """The status line after a run: ``Done in 12 s.``, or ``Done in 12 s, with 2 warnings (below).``"""
    if not warnings:
        return f"Done in {seconds:.0f} s."
    return f"Done in {seconds:.0f} s, with {len(warnings)} warning{'s' if len(warnings) > 1 else ''} (below)."


def air_slices_text(report: Dict[str, Any]) -> str:
    """The module log's line for the report's ``air_slices_skipped``: ``LiverTumorSeg: the network was not run on 4
    slices whose whole input was air (below -800 HU); they are background.``; empty when none was left out (0, null:
    every slice ran, or a report without the key)."""
    count = report.get("air_slices_skipped") if isinstance(report, dict) else None
    if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
        return ""
    return (f"LiverTumorSeg: the network was not run on {count} slice{'s' if count > 1 else ''} whose whole input "
            f"was air (below -800 HU); {'they are' if count > 1 else 'it is'} background.")


def model_choices(entries: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Combo-box items ``{"text", "path", "default", "usable"}`` from ``list_installed_models()`` entries (sorted by
    file name); unusable ones marked in the text and ``usable`` False. Where two entries share a name and source,
    each item's text names its file: two user packages named alike were two identical items (the package audit)."""
    items = []
    entries = list(entries)
    labels = [f"{entry['name']} ({entry.get('source', 'file')})" for entry in entries]
    for entry, label in zip(entries, labels):
        text = label if labels.count(label) == 1 else f"{entry['name']} ({entry.get('source', 'file')}: " \
                                                       f"{_file_name(str(entry['path']))})"
        if entry.get("default"):
            text += " - default"
        if entry.get("error"):
            text += " - unusable"
        items.append({"text": text, "path": str(entry["path"]), "default": bool(entry.get("default"))
                      and not entry.get("error"), "usable": not entry.get("error"), "error": entry.get("error"),
                      "bundled_default_file": entry.get("source") == "bundled"
                      and _file_name(str(entry["path"])) == BUNDLED_DEFAULT_FILE})
    return items


BUNDLED_DEFAULT_FILE = "default.safetensors"
"""The bundled package ``--model default`` runs (by its file name in the bundled folder)."""


def installed_by_file_name(model_path: str, items: Sequence[Dict[str, Any]]) -> str:
    """The path of the one usable item (:func:`model_choices`) whose file has ``model_path``'s file name, else ''.
    A scene saved on another computer, or before an update moved the user folder, names the model by a path this
    installation lacks; the same package installed here was replaced by the default, with a note that it was not
    installed."""
    name = _file_name(model_path)
    found = [item["path"] for item in items if item.get("usable", True) and os.path.basename(item["path"]) == name]
    return found[0] if name and len(found) == 1 else ""


def model_found_by_name_text(model_path: str, found: str) -> str:
    """The panel's note that the scene's model was taken from this installation under another folder."""
    name = _file_name(model_path)
    return (f"The scene's model '{name}' was saved from another folder; the installed file of that name is "
            f"selected ({found}).")


def default_model_path(items: Sequence[Dict[str, Any]]) -> str:
    """The path the panel selects for a new scene: the usable package flagged default, else, where the bundled
    folder holds no default file at all, the first usable item; '' when none is usable, or when the bundled default
    is there but cannot be used (damaged): a new scene then selects nothing (:func:`unusable_default_text` says
    why) rather than another architecture without a word, where ``segment`` refuses the damaged default (the
    package audit: alexnet_fcn_v2 was selected). The list is sorted by file name, so its first item was
    alexnet_fcn_v2, not the default."""
    usable = [item for item in items if item.get("usable", True)]
    flagged = [item["path"] for item in usable if item.get("default")]
    if flagged:
        return flagged[0]
    if any(item.get("bundled_default_file") for item in items):
        return ""
    return usable[0]["path"] if usable else ""


def unusable_default_text(items: Sequence[Dict[str, Any]]) -> str:
    """The panel's note when the bundled default package is there but cannot be used (:func:`default_model_path`
    then selects nothing), naming why and the fix; '' otherwise."""
    broken = [item for item in items if item.get("bundled_default_file") and not item.get("usable", True)]
    if not broken:
        return ""
    return (f"The bundled default model cannot be used: {broken[0].get('error')}. Restore "
            f"Resources/Models/{BUNDLED_DEFAULT_FILE} from the release (or reinstall the extension), or choose "
            f"another model in the list.")


def device_text(last_device: str = "") -> str:
    """The panel's device line. The segmentation runs PyTorch in the child process, not in Slicer, so before a
    run the line says how the device is chosen, and after one which device the child used."""
    if last_device:
        return f"Last run used: {last_device} (PyTorch runs in a separate process, not inside Slicer)."
    return ("The device is chosen by the segmentation process: Auto uses the GPU (NVIDIA CUDA, or a Mac's GPU) "
            "when PyTorch sees one, else the CPU.")
