"""The panel's follow-up comparison run in a child process (Qt-free): ``python -m LiverTumorSegLib followup``.

The comparison registers the two CTs (SimpleITK) and measures every lesion: 14 s on 2 cores for two
160 x 512 x 512 CTs, which in Slicer's process froze the GUI. :meth:`FollowupJob.start` (main thread) writes the
two label maps (the segmentations' Liver / Liver tumor segments on their CTs' grids) and hands over the CTs (a
node's own file when usable, else a temporary NIfTI, as for segmenting); the child writes ``change.json``;
:meth:`~.childjob.ChildJob.poll` then fills the change table on the main thread. Cancel kills the child; the
scene is changed only after a successful run.
"""
from typing import Any, Dict, List, Optional

from LiverTumorSegLib import mrml
from LiverTumorSegLib.errors import InputError, LiverTumorSegError
from LiverTumorSegLib.followup import (check_after_complete_response, check_nadir_sum_mm, is_change_report,
                                      read_previous_change, write_change_report)

from . import panel_text
from .childjob import (DONE, ChildJob, check_shown_in_scratch_scene, last_error_line,
                       require_node_of_class, require_scene_node, reusable_table)
from .job import (hand_over_segmentation, require_made_on, same_grid, slice_thickness_for_child, volume_grid,
                  voxels_state)
from .measure_job import changed_segment_names, segment_grids, segments_state


NADIR_FIELD_NAME = "Nadir sum of diameters (mm)"
"""The compare section's label of its nadir field (named in the error for what was typed there)."""
AFTER_CR_FIELD_NAME = "Previous assessment was a complete response"
"""The compare section's check box for ``followup --after-complete-response`` (named in the error for a nadir above 0
mm given with it)."""
PREVIOUS_FIELD_NAME = "Previous follow-up report (change.json)"
"""The compare section's path field for ``followup --previous CHANGE_JSON``: the change report of the previous
follow-up against the same baseline, whose nadir and complete response carry over (named in its errors)."""
PREVIOUS_REPORT_ADVICE = ("choose in that field the change report that 'Save change report...' saved for the previous "
                          "follow-up (or that 'livertumorseg followup' wrote), or clear the field")
"""What the errors about the *Previous follow-up report* say to do (the command line's say ``give the change.json that
followup wrote``)."""


def previous_report_path(text: str) -> str:
    """The path in the *Previous follow-up report* field as typed, without surrounding blanks and quotes (Windows'
    *Copy as path*), not read: '' for none."""
    cleaned = (text or "").strip()
    if len(cleaned) >= 2 and cleaned[0] == cleaned[-1] and cleaned[0] in "'\"":
        cleaned = cleaned[1:-1].strip()
    return cleaned


def previous_report_from_text(text: str) -> Optional[str]:
    """The previous follow-up's change report named in the compare section's *Previous follow-up report* field: None
    for an empty field (no earlier follow-up report: the nadir field and the complete-response box decide), else the
    path, once read as a change report (:func:`~LiverTumorSegLib.followup.read_previous_change`), so that a missing
    file, one that is not JSON or not a change report is an :class:`InputError` in the field's words before the
    child starts. Quotes around the path (Windows' *Copy as path*) are taken off."""
    cleaned = previous_report_path(text)
    if not cleaned:
        return None
    read_previous_change(cleaned, f"{PREVIOUS_FIELD_NAME}:", PREVIOUS_REPORT_ADVICE)
    return cleaned


def check_previous_report_alone(previous_report: Optional[str], nadir_sum_mm: Optional[float],
                                after_complete_response: bool) -> None:
    """InputError when a previous follow-up report is given with a nadir or the complete-response box: the report
    gives both (as ``followup --previous`` refuses ``--nadir-sum-mm`` and ``--after-complete-response``)."""
    if previous_report is None or (nadir_sum_mm is None and not after_complete_response):
        return
    given = NADIR_FIELD_NAME if nadir_sum_mm is not None else AFTER_CR_FIELD_NAME
    raise InputError(f"{PREVIOUS_FIELD_NAME} gives the nadir and whether the previous assessment was a complete "
                     f"response; clear '{given}' (or clear the report to give them by hand).")


def check_change_report_to_save(change: Optional[Dict[str, Any]]) -> None:
    """InputError, in the panel's words, unless ``change`` (the report kept with the change table shown,
    :func:`~LiverTumorSegLib.mrml.change_report_of`) is a change report the next follow-up's *Previous follow-up
    report* field takes (:func:`~LiverTumorSegLib.followup.is_change_report`): none or an empty one, nothing to save;
    JSON that is no change report (its text node edited by hand), refused here and not first when named as the
    previous report. The panel checks it before its save dialog opens."""
    if not change:
        raise InputError(panel_text.NO_CHANGE_REPORT_TO_SAVE)
    if not is_change_report(change):
        raise InputError(panel_text.NOT_A_CHANGE_REPORT_TO_SAVE)


def save_change_report(change: Dict[str, Any], path: str, previous_report: Optional[str] = None) -> str:
    """Write the comparison's change report (``change``, the follow-up command's JSON as the panel shows it) to
    ``path`` (``.json`` added when it has no suffix, in place of a trailing dot), replacing a file there (the save
    dialog asked), so that the next follow-up's comparison can name it in *Previous follow-up report*. The report
    named in that field (``previous_report``) is refused as the place: saving there would replace the previous
    follow-up's report with this one's. Returns the path written."""
    from pathlib import Path

    check_change_report_to_save(change)
    if not str(path or "").strip():
        raise InputError("Give a file name for the change report (e.g. change_followup2.json).")
    target = Path(str(path).strip())
    if not target.suffix:  # 'followup2.' has no suffix either: it became 'followup2..json'
        if not target.name.rstrip("."):
            raise InputError(f"'{target}' is no file name; give one for the change report (e.g. "
                             f"change_followup2.json).")
        target = target.with_name(target.name.rstrip(".") + ".json")
    if previous_report and target.resolve() == Path(previous_report).resolve():
        raise InputError(f"'{target}' is the {PREVIOUS_FIELD_NAME} this comparison read: saving there would replace "
                         f"the previous follow-up's report with this one's; give this report another name.")
    write_change_report(change, target, overwrite=True)
    return str(target)


def nadir_sum_from_text(text: str) -> Optional[float]:
    """The RECIST nadir typed in the compare section's field, in mm: None for an empty field (no earlier follow-up:
    the baseline is the reference, as ``followup`` without ``--nadir-sum-mm``), else a sum of diameters of 0 mm or
    more. A decimal comma and a trailing "mm" are taken ('45,5 mm' is 45.5), but not a comma before exactly three
    digits: '1,000' is 1000 mm with a thousands separator and 1.0 mm with a decimal comma, and was read as 1.0 mm
    (:func:`ambiguous_comma`). Anything else is an :class:`InputError` saying what to type."""
    cleaned = (text or "").strip()
    if cleaned.lower().endswith("mm"):
        cleaned = cleaned[:-2].strip()
    if not cleaned:
        return None
    if ambiguous_comma(cleaned):
        readings = "('1,000' = 1000 mm) or be a decimal comma ('1,000' = 1 mm)"
        if cleaned.count(",") == 1 and cleaned.replace(",", "").isdigit():
            readings = (f"('{cleaned}' = {cleaned.replace(',', '')} mm) or be a decimal comma ('{cleaned}' = "
                        f"{float(cleaned.replace(',', '.')):g} mm)")
        raise InputError(f"{NADIR_FIELD_NAME}: '{text.strip()}' is ambiguous: a comma before three digits may separate "
                         f"thousands {readings}. Type the sum in mm without a thousands separator, with a decimal "
                         f"point if it has decimals (e.g. 1000 or 1.0).")
    try:
        value = float(cleaned.replace(",", ".") if cleaned.count(",") == 1 and "." not in cleaned else cleaned)
    except ValueError:
        value = None
    if value is None or value != value or value in (float("inf"), float("-inf")) or value < 0:
        raise InputError(f"{NADIR_FIELD_NAME}: '{text.strip()}' is not a sum of diameters in mm. Type the smallest sum "
                         f"of the baseline's target lesions at an earlier follow-up (0 or more, e.g. 45.5), or leave "
                         f"the field empty to judge the response from the baseline alone.")
    return value


def ambiguous_comma(text: str) -> bool:
    """Whether ``text`` (a number as typed) has a comma followed by exactly three digits and no point: '1,000' or
    '12,500' read as a thousands separator and as a decimal comma give numbers 1000 times apart."""
    import re

    return "." not in text and re.search(r",\d{3}(?!\d)", text) is not None


class FollowupProcessError(LiverTumorSegError):
    """The follow-up process reported an error the user can fix (its one-line message)."""


def check_change_report(change: Dict[str, Any], what: str = "The follow-up process") -> Dict[str, Any]:
    """``change`` (the child's change.json) when the change table and the compare section's text can be made from it;
    else :class:`~.childjob.ChildResultError`, raised before the scene is changed: one without its alignment made a
    table and ended 'done', and the panel's text then raised KeyError in the poll timer's slot. The table is made in
    a scene of its own to find out."""
    check_shown_in_scratch_scene(what, "change.json", lambda scene: mrml.create_change_table_node(scene, change),
                                 lambda: panel_text.comparison_text(change))
    return change


class FollowupOutcome:
    """How a comparison ended: ``kind`` (DONE | CANCELLED | FAILED), the change report (``followup`` command's
    JSON), the change table node, the error with details (the child's stderr tail) and the wall time (s)."""

    def __init__(self, kind: str, change: Optional[Dict[str, Any]] = None, table_node: Any = None,
                 error: Optional[BaseException] = None, details: str = "", seconds: float = 0.0) -> None:
        self.kind = kind
        self.change = change or {}
        self.table_node = table_node
        self.error = error
        self.details = details
        self.seconds = seconds


class FollowupJob(ChildJob):
    """Compare ``followup_segmentation`` (on ``followup_volume``) with ``baseline_segmentation`` (on
    ``baseline_volume``): RECIST 1.1 response and lesion matching. ``align_on_ct``: register the CTs (else the
    liver masks). ``table_node``: the change table to refill when it was made for the same two segmentations
    (else, or None: a new one, so another patient's comparison is never overwritten). ``nadir_sum_mm``: the RECIST
    nadir, the smallest sum of diameters (mm) of the baseline's target lesions at an earlier follow-up (None: the
    baseline is the reference; ``followup --nadir-sum-mm``). ``after_complete_response``: the previous assessment
    was a complete response (``followup --after-complete-response``: any baseline lesion seen again is PD).
    ``previous_report``: the change.json of the previous follow-up against this baseline (``followup --previous``:
    its nadir and complete response carry over; not with either of the two). Runner, python, library root, temp root and env as for
    :class:`~.childjob.ChildJob`."""

    outcome_class = FollowupOutcome
    WHAT = "The follow-up process"  # how its messages name the child

    def __init__(self, scene: Any, baseline_segmentation: Any, baseline_volume: Any, followup_segmentation: Any,
                 followup_volume: Any, runner: Any, python: str, library_root: str, align_on_ct: bool = True,
                 table_node: Any = None, temp_root: Optional[str] = None, env: Optional[Dict[str, str]] = None,
                 nadir_sum_mm: Optional[float] = None, after_complete_response: bool = False,
                 previous_report: Optional[str] = None) -> None:
        nodes = (baseline_segmentation, baseline_volume, followup_segmentation, followup_volume)
        if not all(nodes):
            raise InputError("Select the baseline and follow-up segmentations and their CTs.")
        for node, class_name, what in zip(nodes, ("vtkMRMLSegmentationNode", "vtkMRMLScalarVolumeNode") * 2,
                                          ("the baseline segmentation", "the baseline CT",
                                           "the follow-up segmentation", "the follow-up CT")):
            require_scene_node(scene, node, class_name, what)
        require_node_of_class(table_node, "vtkMRMLTableNode", "the change table")  # one not in the scene: a new one
        check_nadir_sum_mm(nadir_sum_mm, "The nadir sum of diameters")  # before anything is handed over
        check_after_complete_response(after_complete_response, nadir_sum_mm, AFTER_CR_FIELD_NAME,
                                      "the nadir sum of diameters")
        check_previous_report_alone(previous_report, nadir_sum_mm, after_complete_response)
        if previous_report is not None:  # missing, not JSON or no change report: said before anything is handed over
            previous_report = previous_report_from_text(previous_report)
        for segmentation in (baseline_segmentation, followup_segmentation):  # else it was compared as empty
            mrml.require_output_segments(segmentation)
        # swapped CT selectors compared each segmentation on the other CT's grid and HU (a PD that was an SD)
        require_made_on(baseline_segmentation, baseline_volume, "to compare it as the baseline")
        require_made_on(followup_segmentation, followup_volume, "to compare it as the follow-up")
        for node in nodes:  # a node under a warp was compared as the warp resampled it; the other runs refuse it
            mrml.node_to_world(node)  # InputError naming the non-linear transform, with what to do (harden it)
        super().__init__(runner, python, library_root, temp_root, env)
        self._scene = scene
        self._nodes = nodes
        self._align_on_ct = bool(align_on_ct)
        self._nadir_sum_mm = None if nadir_sum_mm is None else float(nadir_sum_mm)
        self._after_complete_response = bool(after_complete_response)
        self._previous_report = previous_report
        self._table_node = table_node
        self._ct_names = {}  # type: Dict[str, str]  # the CT file handed over -> the volume's name
        self._left_out = []  # type: List[str]  # warnings for segments the comparison leaves out
        # each segmentation's segments_state as handed over, with their grids: an edit while the child runs is not in
        # the change table
        self._handed_over = []  # type: List[Any]
        self._cts_handed_over = []  # type: List[Any]  # (CT node, its voxels_state, its world grid) as handed over

    @property
    def nodes(self) -> tuple:
        """The compared nodes: (baseline segmentation, baseline CT, follow-up segmentation, follow-up CT)."""
        return self._nodes

    def _panel_text(self, text: str) -> str:
        """A child's error or warning in the panel's words, with the CTs named as volumes instead of the
        (temporary) files they were handed over as."""
        for path, name in self._ct_names.items():
            text = panel_text.error_text(text, path, name)
        return panel_text.followup_text(text)

    def _hand_over(self, segmentation: Any, volume: Any, tag: str) -> List[str]:
        """``[labels path, CT path]`` of one time point, written into the temporary folder (main thread); the
        segments it leaves out are warned about when the comparison is shown."""
        left_out = mrml.left_out_warning(segmentation)
        if left_out:
            self._left_out.append(left_out)
        # handed over as one label map, tumor segments that touch are one lesion: said, as measure says it
        touching = mrml.touching_tumor_segments_warning(segmentation, *volume_grid(volume))
        if touching:
            self._left_out.append(touching)
        # a 'Kidney tumor' segment became a (new) liver lesion, a false PD, without the word measure and the command
        # line's followup give
        other_organ = mrml.other_organ_tumor_warning(segmentation)
        if other_organ and other_organ not in self._left_out:
            self._left_out.append(other_organ)
        grids = segment_grids(segmentation)
        self._handed_over.append((segmentation, grids, segments_state(segmentation, grids)))
        paths = hand_over_segmentation(segmentation, volume, self._path(f"{tag}_labels.nii"),
                                       self._path(f"{tag}_ct.nii"))
        self._cts_handed_over.append((volume, voxels_state(volume), volume_grid(volume)))  # after the hand-over
        return paths

    def _ct_changed_warnings(self) -> List[str]:
        """One warning per CT whose voxels or world grid (a transform, origin, spacing or size) were changed since it
        was handed over (the same node given as both CTs is named once): the change table compares the CTs as they
        were, while the segment and measure runs said so and this one did not."""
        warnings = []  # type: List[str]
        for volume, voxels, (geometry, shape) in self._cts_handed_over:
            try:
                now_geometry, now_shape = volume_grid(volume)
            except InputError:  # its image data was taken away
                now_geometry, now_shape = None, None
            if voxels_state(volume) == voxels and same_grid(now_geometry, now_shape, geometry, shape):
                continue
            text = (f"The CT '{volume.GetName()}' was changed (its voxels, or its transform, origin, spacing or size) "
                    f"while it was compared; the change table compares the CTs as they were when 'Compare' was "
                    f"clicked. Compare again to compare them as they are now.")
            if text not in warnings:
                warnings.append(text)
        return warnings

    def _edited_warnings(self) -> List[str]:
        """One warning per segmentation whose segments were edited, added, removed or renamed since they were
        handed over (the same node given as baseline and follow-up is named once)."""
        warnings = []  # type: List[str]
        for segmentation, grids, state in self._handed_over:
            edited = changed_segment_names(state, segments_state(segmentation, grids))
            text = (f"The segment(s) {edited} of '{segmentation.GetName()}' were edited, added, removed or renamed "
                    f"while they were compared; the change table compares the segments as they were when 'Compare' "
                    f"was clicked. Compare again to compare them as they are now.")
            if edited and text not in warnings:
                warnings.append(text)
        return warnings

    def _removed_input_text(self) -> str:
        if all(self._scene.IsNodePresent(node) for node in self._nodes):
            return ""
        return "A segmentation or CT was removed from the scene while it was compared; no change table was made."

    def _slice_thickness_arguments(self) -> List[str]:
        """``--baseline-slice-thickness-mm MM`` / ``--followup-slice-thickness-mm MM`` with the DICOM SliceThickness
        of the series each CT was loaded from (:func:`~.job.slice_thickness_for_child`, as Segment and Update lesion
        table give it): the handed-over NIfTI files record none, so both time points took their slice spacing (7 mm
        slices every 5 mm: a 12 mm lesion a baseline target, where RECIST asks 14 mm); nothing for a CT whose
        thickness the command line would not take (the child takes the spacing)."""
        args = []  # type: List[str]
        for volume, option in ((self._nodes[1], "--baseline-slice-thickness-mm"),
                               (self._nodes[3], "--followup-slice-thickness-mm")):
            thickness_mm = slice_thickness_for_child(volume, volume_grid(volume)[0])
            if thickness_mm is not None:
                args += [option, repr(float(thickness_mm))]
        return args

    def _prepare(self) -> List[str]:
        base_labels, base_ct = self._hand_over(self._nodes[0], self._nodes[1], "baseline")
        follow_labels, follow_ct = self._hand_over(self._nodes[2], self._nodes[3], "followup")
        self._ct_names = {base_ct: self._nodes[1].GetName(), follow_ct: self._nodes[3].GetName()}
        nadir = [] if self._nadir_sum_mm is None else ["--nadir-sum-mm", repr(self._nadir_sum_mm)]
        if self._after_complete_response:
            nadir.append("--after-complete-response")
        if self._previous_report is not None:
            nadir += ["--previous", self._previous_report]
        return ["-m", "LiverTumorSegLib", "followup", "--baseline", base_labels, "--followup", follow_labels,
                "--baseline-ct", base_ct, "--followup-ct", follow_ct, "--alignment",
                "ct" if self._align_on_ct else "liver", *nadir, *self._slice_thickness_arguments(), "--no-picture",
                "-o", self._path("change.json")]

    def _finish(self) -> FollowupOutcome:
        code = self._runner.exit_code()
        stderr = self._runner.read_stderr()
        change = self._result_json(code, "change.json", "The follow-up process")
        if change is None:
            return self._exit_failure(code, stderr, FollowupProcessError, "The follow-up process",
                                      message=self._panel_text(last_error_line(stderr)))
        check_change_report(change)  # before a table is made or refilled
        change["warnings"] = self._ct_changed_warnings() + self._edited_warnings() + self._left_out + [self._panel_text(w)
                                                                         for w in change.get("warnings", [])]
        removed = self._removed_input_text()
        if removed:
            raise InputError(removed)
        baseline, followup = self._nodes[0], self._nodes[2]
        # refilled only for the same pair and while it is in the scene
        reuse = reusable_table(self._scene, self._table_node,  # a reloaded scene's table for this pair too
                               lambda table: mrml.change_table_owned_by(table, baseline, followup),
                               search_scene=True)
        # a new table is named after its follow-up CT and kept in that CT's study: every comparison's table was
        # 'Lesion follow-up' under the scene, and baseline vs FU1 could not be told from baseline vs FU2
        name = self._scene.GenerateUniqueName(f"{self._nodes[3].GetName()} lesion follow-up")
        table_node = mrml.create_change_table_node(self._scene, change, table_node=reuse, name=name)
        if reuse is None:
            mrml.place_beside(self._scene, table_node, self._nodes[3])
        mrml.link_change_table(table_node, baseline, followup)
        return FollowupOutcome(DONE, change, table_node, seconds=self.elapsed_seconds())
