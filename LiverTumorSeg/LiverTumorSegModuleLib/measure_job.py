"""The panel's *Update lesion table*: measure a segmentation's Liver / Liver tumor segments again in a child process
(``python -m LiverTumorSegLib measure``), Qt-free.

A reader corrects the outline in the Segment Editor; the lesion table still lists the network's lesions. This
job hands the edited segments over as a 0/1/2 label map on the CT's grid (with the CT, and the tumor probability
volume when the segmentation has one), the child writes the lesion report (volumes, RECIST axes, targets, mean
HU, mean tumor probability), and :meth:`~.childjob.ChildJob.poll` refills the segmentation's lesion table on the
main thread. Measuring a 300-slice CT takes about a second of numpy and scipy, which in Slicer's process would
freeze the GUI for that long and more; Cancel kills the child and the scene is changed only after a successful run.
"""
from typing import Any, Dict, List, Optional

import numpy as np

from LiverTumorSegLib import mrml
from LiverTumorSegLib.errors import InputError, LiverTumorSegError

from . import panel_text
from .childjob import (ChildJob, last_error_line, require_node_of_class, require_scene_node,
                       reusable_table)
from .job import (DONE, SegmentationOutcome, check_lesion_report, hand_over_segmentation, require_ct_volume,
                  require_made_on, same_grid, slice_thickness_for_child, volume_grid, voxels_state, write_temporary_ct)


class MeasureProcessError(LiverTumorSegError):
    """The measuring process reported an error the user can fix (its one-line message)."""


def segments_state(segmentation_node: Any, grids: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """``{segment ID: (name, voxel fingerprint)}`` of every segment of ``segmentation_node``: what a measuring reads
    (a segment's name decides whether it is liver, tumor or left out). ``grids`` (``{segment ID: 4x4}``,
    :func:`segment_grids`): take each segment's voxels on that grid, as the segment run's edit check does
    (:func:`LiverTumorSegLib.mrml.segment_voxels_fingerprint`: a layer moved onto a whole-number finer grid is no
    edit)."""
    segmentation = segmentation_node.GetSegmentation()
    state = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        grid = (grids or {}).get(segment_id)
        state[segment_id] = (segmentation.GetSegment(segment_id).GetName(),
                             mrml.segment_voxels_fingerprint(segmentation_node, segment_id, grid))
    return state


def segment_grids(segmentation_node: Any) -> Dict[str, Any]:
    """``{segment ID: 4x4 image-to-world matrix of its labelmap}`` (:func:`LiverTumorSegLib.mrml.segment_grid`)."""
    segmentation = segmentation_node.GetSegmentation()
    return {segment_id: mrml.segment_grid(segmentation_node, segment_id)
            for segment_id in (segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments()))}


def changed_segment_names(before: Dict[str, Any], after: Dict[str, Any]) -> List[str]:
    """Names of the segments whose name or voxels differ between two :func:`segments_state` (or that only one of them
    has; a removed segment by its name before, any other by its name now)."""
    segment_ids = list(before) + [segment_id for segment_id in after if segment_id not in before]
    return [(after.get(segment_id) or before[segment_id])[0] or segment_id for segment_id in segment_ids
            if before.get(segment_id) != after.get(segment_id)]


class MeasureJob(ChildJob):
    """Measure ``segmentation_node``'s Liver / Liver tumor segments on ``volume_node`` (the CT they were drawn on)
    and refill its lesion table. ``table_node``: the lesion table to refill when it is the one made for this
    segmentation (else, or None: the scene's table made for it, else a new one, so another segmentation's table is
    never overwritten). Runner,
    python, library root, temp root and env as for :class:`~.childjob.ChildJob`. The outcome is a
    :class:`~.job.SegmentationOutcome` (segmentation node, table node, report, warnings)."""

    outcome_class = SegmentationOutcome
    WHAT = "The measuring process"  # how its messages name the child

    def __init__(self, scene: Any, segmentation_node: Any, volume_node: Any, runner: Any, python: str,
                 library_root: str, table_node: Any = None, temp_root: Optional[str] = None,
                 env: Optional[Dict[str, str]] = None) -> None:
        if segmentation_node is None or volume_node is None:
            raise InputError("Select the CT and its liver segmentation to measure.")
        require_scene_node(scene, segmentation_node, "vtkMRMLSegmentationNode", "the segmentation")
        require_scene_node(scene, volume_node, "vtkMRMLScalarVolumeNode", "the CT")
        require_node_of_class(table_node, "vtkMRMLTableNode", "the lesion table")  # one not in the scene: a new one
        require_ct_volume(volume_node)
        mrml.require_output_segments(segmentation_node)
        require_made_on(segmentation_node, volume_node, "to measure it")
        super().__init__(runner, python, library_root, temp_root, env)
        self._scene = scene
        self._segmentation = segmentation_node
        self._volume = volume_node
        self._table_node = table_node
        self.ct_path = ""
        self._placed_at_start = None  # type: Any  # see _placement (set when the run starts)
        self._left_out = ""  # the warning for segments measure leaves out (set when the run starts)
        self._touching = ""  # the warning for tumor segments that touch, measured as one lesion (set then too)
        self._other_organ = ""  # the warning for tumor segments named after another organ (set then too)
        self._probability_left_out = ""  # the warning for a probability map off the CT's grid (set when it starts)
        self._segments_at_start = {}  # type: Dict[str, Any]  # segments_state as handed over, and their grids:
        self._grids_at_start = {}  # type: Dict[str, Any]  # an edit while the child runs is not in the table
        self._voxels_at_start = None  # type: Any  # the CT's job.voxels_state as handed over (set when it starts)

    def _probability_arguments(self) -> List[str]:
        """``--probabilities PATH`` when the segmentation has its tumor probability volume, with voxels, on the CT's
        grid (the report then gives each lesion's mean network probability), else nothing: the probability is
        optional, so a map whose file was missing when a saved scene was loaded does not stop the measuring. A map on
        another grid is left out with a warning (:attr:`_probability_left_out`): the column was empty without a word."""
        probability = mrml.probability_volume_of(self._segmentation)  # not the original's, for a copy
        if probability is None or not self._scene.IsNodePresent(probability) or probability.GetImageData() is None:
            return []  # none, removed, or its file was missing when the scene loaded: the column stays empty
        ct_geometry, ct_shape = volume_grid(self._volume)
        try:
            geometry, shape = volume_grid(probability)
        except InputError:  # no voxels (a size of 0) or colour voxels: left out as a map on another grid is
            geometry, shape = None, None
        if geometry is None or not same_grid(geometry, shape, ct_geometry, ct_shape):
            # its voxels would be other places' probabilities
            self._probability_left_out = (
                f"The tumor probability volume '{probability.GetName()}' is not on the grid of the CT "
                f"'{self._volume.GetName()}' (moved, resampled or cropped since the segmentation), so the lesion "
                f"table's Tumor probability column is left empty; segment the CT again for a probability on its grid.")
            return []
        return ["--probabilities", write_temporary_ct(probability, self._path("probabilities.nii"))]

    def _slice_thickness_arguments(self) -> List[str]:
        """``--slice-thickness-mm MM`` with the DICOM SliceThickness of the series the CT was loaded from
        (:func:`~.job.slice_thickness_for_child`): the handed-over NIfTI records none, and RECIST's measurable minimum
        is twice it above 5 mm; else nothing (the child takes the slice spacing)."""
        thickness_mm = slice_thickness_for_child(self._volume, volume_grid(self._volume)[0])
        return [] if thickness_mm is None else ["--slice-thickness-mm", repr(float(thickness_mm))]

    def _placement(self) -> Any:
        """The CT's world grid and the segmentation's frame (its transform to world): what the report's lesion
        positions were measured in. None when either cannot be read (image data taken away, a non-linear
        transform), which counts as a change."""
        try:
            return volume_grid(self._volume), mrml.node_to_world(self._segmentation)
        except InputError:
            return None

    def _check_placement_unchanged(self) -> None:
        """InputError when the CT or the segmentation was moved while it was measured: the report's positions are
        where the lesions were at the start, and its RECIST axes were drawn 40 mm from a lesion after a transform
        was applied during the run."""
        now, start = self._placement(), self._placed_at_start
        if now is not None and start is not None:
            ((geometry, shape), frame), ((start_geometry, start_shape), start_frame) = now, start
            if same_grid(geometry, shape, start_geometry, start_shape) and np.allclose(frame, start_frame, atol=1e-6):
                return
        raise InputError(f"The CT '{self._volume.GetName()}' or its segmentation was moved or changed while it was "
                         f"measured (a transform, origin, spacing or size); the lesion table was not changed, since "
                         f"its positions lie where the lesions were. Update the lesion table again.")

    def _removed_input_text(self) -> str:
        if all(self._scene.IsNodePresent(node) for node in (self._segmentation, self._volume)):
            return ""
        return "The segmentation or its CT was removed from the scene while it was measured; the lesion table was not " \
               "changed."

    def _prepare(self) -> List[str]:
        # read strictly at the start: a segmentation under a non-linear transform is refused here with what to do
        # (harden it), as a segmentation run refuses it; read leniently, it ran to the end and was then reported as
        # 'moved or changed while it was measured', on every try
        self._placed_at_start = volume_grid(self._volume), mrml.node_to_world(self._segmentation)
        self._left_out = mrml.left_out_warning(self._segmentation)
        # as measure of the saved .seg.nrrd says it: handed over as one label map, tumor segments that touch were one
        # lesion without a word
        self._touching = mrml.touching_tumor_segments_warning(self._segmentation, *volume_grid(self._volume))
        self._other_organ = mrml.other_organ_tumor_warning(self._segmentation)  # names the label map does not hold
        self._grids_at_start = segment_grids(self._segmentation)
        self._segments_at_start = segments_state(self._segmentation, self._grids_at_start)
        labels_path, self.ct_path = hand_over_segmentation(
            self._segmentation, self._volume, self._path("labels.nii"), self._path("ct.nii"))
        self._voxels_at_start = voxels_state(self._volume)  # after the hand-over, which reads them
        return (["-m", "LiverTumorSegLib", "measure", labels_path, "--ct", self.ct_path]
                + self._probability_arguments() + self._slice_thickness_arguments() + ["-o", self._path("report.json")])

    def _finish(self) -> SegmentationOutcome:
        code = self._runner.exit_code()
        stderr = self._runner.read_stderr()
        report = self._result_json(code, "report.json", self.WHAT)
        if report is None:
            message = panel_text.error_text(last_error_line(stderr), self.ct_path, self._volume.GetName())
            return self._exit_failure(code, stderr, MeasureProcessError, self.WHAT, message)
        check_lesion_report(report, self.WHAT)  # before the table (and the axes drawn for its rows) is touched
        removed = self._removed_input_text()
        if removed:
            raise InputError(removed)
        self._check_placement_unchanged()
        reuse = reusable_table(self._scene, self._table_node,
                               lambda table: mrml.lesion_table_owned_by(table, self._segmentation),
                               search_scene=True)  # a script's call without its table: made a new one each time
        name = self._scene.GenerateUniqueName(f"{self._volume.GetName()} liver lesions")  # as a run names a new one
        table_node = mrml.create_lesion_table_node(self._scene, report, table_node=reuse, name=name)
        mrml.link_lesion_table(table_node, self._segmentation)
        if reuse is None:
            mrml.place_beside(self._scene, table_node, self._volume)
        warnings = [w for w in (self._left_out, self._touching, self._other_organ, self._probability_left_out) if w] + \
            panel_text.result_warnings(report, self.ct_path, self._volume.GetName())
        now = segments_state(self._segmentation, self._grids_at_start)
        edited = changed_segment_names(self._segments_at_start, now)
        if edited:
            warnings.insert(0, f"The segment(s) {edited} of '{self._segmentation.GetName()}' were edited, added, "
                               f"removed or renamed while they were measured; the lesion table lists the segments as "
                               f"they were when 'Update lesion table' was clicked. Update it again to measure them as "
                               f"they are now.")
        if self._voxels_at_start is not None and voxels_state(self._volume) != self._voxels_at_start:
            warnings.insert(0, f"The voxels of the CT '{self._volume.GetName()}' were changed while its segments were "
                               f"measured; the lesion table is of the CT as it was when 'Update lesion table' was "
                               f"clicked. Update it again to measure the CT as it is now.")
        mrml.set_lesion_table_warnings(table_node, warnings)  # in the panel's words, shown again after a reload
        return SegmentationOutcome(DONE, self._segmentation, table_node, report, seconds=self.elapsed_seconds(),
                                   warnings=warnings)
