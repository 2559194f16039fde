"""The Slicer module's *Update lesion table from segments* (LiverTumorSegLogic.measureSegmentation): after a reader
edits the segments, the lesion table is measured again from them in a child process. Headless, with the stand-ins
of Testing/Python/test_slicer_module_logic.py and real MRML from slicer-core."""
import ast
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from test_slicer_module_logic import module  # noqa: F401 - the module-under-test fixture

from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.phantom import PhantomLesion, make_phantom
from LiverTumorSegLib.volume import ImageGeometry
from mrml_helpers import add_volume_node, add_warp_transform_node

MODULE_FILE = Path(__file__).resolve().parents[2] / "LiverTumorSeg" / "LiverTumorSeg.py"
# 2 x 2 x 4 mm voxels, origin off zero, so that volumes and RAS positions have one right answer
GEOMETRY = ImageGeometry(spacing=(2.0, 2.0, 4.0), origin=(-60.0, -40.0, 90.0))


def _logic(module):
    return module.m.LiverTumorSegLogic(runnerFactory=module.m.childprocess.SubprocessRunner, python=sys.executable)


def _scene_with_result(module):
    """A phantom CT node and the module's segmentation of it (one lesion), as a run leaves them."""
    phantom = make_phantom((20, 64, 64), (2.0, 2.0, 4.0), lesions=[PhantomLesion((10, 30, 30), 9.0, 15.0)],
                           noise_hu=5.0, origin=(-60.0, -40.0, 90.0))
    assert phantom.ct.geometry.almost_equal(GEOMETRY)
    volume = add_volume_node(module.scene, phantom.ct.array, phantom.ct.geometry, "phantom CT")
    segmentation = module.mrml.labels_to_segmentation_node(module.scene, phantom.labels, phantom.ct.geometry)
    return phantom, volume, segmentation


def _edited(labels):
    """The reader's correction: the network's lesion erased (liver again), a 4 x 6 x 5 voxel box drawn as tumor
    (z 4..7, y 20..25, x 14..18) inside the liver: 120 voxels of 16 mm^3 = 1.92 mL."""
    edited = labels.copy()
    edited[edited == 2] = 1
    box = (slice(4, 8), slice(20, 26), slice(14, 19))
    assert (edited[box] == 1).all()
    edited[box] = 2
    return edited


def test_update_lesion_table_measures_the_edited_segments_into_the_same_table(module):
    phantom, volume, segmentation = _scene_with_result(module)
    logic = _logic(module)
    first = logic.measureSegmentation(segmentation, volume)
    (row,) = module.mrml.lesion_table_rows(first.table_node)
    assert row["Volume"] == pytest.approx(phantom.lesions[0].volume_ml, abs=0.0051)  # the report gives 0.01 mL
    assert module.mrml.lesion_table_describes(first.table_node, segmentation)

    # the reader erases the lesion and draws another (the segments change; the table does not, until measured)
    module.mrml.labels_to_segmentation_node(module.scene, _edited(phantom.labels), GEOMETRY,
                                            segmentation_node=segmentation)
    tables_before = module.scene.GetNumberOfNodesByClass("vtkMRMLTableNode")
    again = logic.measureSegmentation(segmentation, volume, tableNode=first.table_node)
    assert again.table_node is first.table_node  # refilled, not a second table
    assert module.scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == tables_before
    (row,) = module.mrml.lesion_table_rows(again.table_node)
    assert row["Volume"] == pytest.approx(1.92, abs=0.0051)
    # the box's in-plane diagonal between voxel centres (5 x 4 steps of 2 mm) plus one 2 mm pixel (as
    # metrics/recist.py defines it)
    assert row["Long axis"] == pytest.approx(np.hypot(5 * 2.0, 4 * 2.0) + 2.0, abs=0.01)
    # centroid voxel (5.5, 22.5, 16) (z, y, x) -> LPS (-60 + 32, -40 + 45, 90 + 22) -> RAS (28, -5, 112)
    assert [row["Centroid R"], row["Centroid A"], row["Centroid S"]] == pytest.approx([28.0, -5.0, 112.0])
    assert row["Mean HU"] == pytest.approx(float(phantom.ct.array[4:8, 20:26, 14:19].mean()), abs=0.051)  # to 0.1 HU
    liver_ml = float((_edited(phantom.labels) >= 1).sum()) * 0.016
    assert again.report["liver_volume_ml"] == pytest.approx(liver_ml, rel=1e-6)
    assert float(again.table_node.GetAttribute("LiverTumorSeg.tumor_volume_ml")) == pytest.approx(1.92)
    assert list(module.temp.iterdir()) == []  # the child's files are gone


def test_update_lesion_table_gives_each_lesion_the_networks_mean_probability(module):
    """The segmentation's tumor probability volume goes to the child: an edited lesion gets the network's mean
    probability over its new voxels."""
    phantom, volume, segmentation = _scene_with_result(module)
    edited = _edited(phantom.labels)
    module.mrml.labels_to_segmentation_node(module.scene, edited, GEOMETRY, segmentation_node=segmentation)
    probability = np.zeros(edited.shape, np.float32)
    probability[4:8, 20:26, 14:19] = 0.25
    probability[4:6, 20:26, 14:19] = 0.75  # half the box: mean 0.5
    node = module.mrml.probability_volume_node(module.scene, probability, GEOMETRY, follow=volume)
    segmentation.SetNodeReferenceID(module.mrml.PROBABILITY_VOLUME_ROLE, node.GetID())
    outcome = _logic(module).measureSegmentation(segmentation, volume)
    (row,) = module.mrml.lesion_table_rows(outcome.table_node)
    assert float(row["Tumor probability"]) == pytest.approx(0.5, abs=0.005)  # a text column, 2 decimals
    assert row["Peak tumor probability"] == "0.7500"  # the largest value over the lesion's voxels, 4 decimals
    assert not [w for w in outcome.warnings if "not on the grid" in w]
    # a saved scene whose probability file was missing at load: the node is there without voxels. Measuring
    # was refused with "holds no image data; load a CT volume"; the probability is optional
    node.SetAndObserveImageData(None)
    outcome = _logic(module).measureSegmentation(segmentation, volume, tableNode=outcome.table_node)
    (row,) = module.mrml.lesion_table_rows(outcome.table_node)
    assert row["Volume"] == pytest.approx(1.92, abs=0.0051) and row["Tumor probability"] in ("", "nan", None)
    assert row["Peak tumor probability"] in ("", "nan", None)
    # ... and one of size 0 (scalars allocated): left out as a map on another grid (the review: refused as 'holds no
    # voxels; load a CT volume' once the panel refused empty volumes)
    import vtk
    empty = vtk.vtkImageData()
    empty.SetDimensions(64, 64, 0)
    empty.AllocateScalars(vtk.VTK_FLOAT, 1)
    node.SetAndObserveImageData(empty)
    outcome = _logic(module).measureSegmentation(segmentation, volume, tableNode=outcome.table_node)
    (row,) = module.mrml.lesion_table_rows(outcome.table_node)
    assert row["Volume"] == pytest.approx(1.92, abs=0.0051) and row["Tumor probability"] in ("", "nan", None)
    assert [w for w in outcome.warnings if "Tumor probability column is left empty" in w]
    # a map on another grid (here 2 mm off in x) would give each lesion the probabilities of other voxels: it is
    # not handed over, and the lesions are measured without it
    shifted = ImageGeometry(spacing=GEOMETRY.spacing, origin=(-58.0, -40.0, 90.0))
    elsewhere = module.mrml.probability_volume_node(module.scene, probability, shifted)
    segmentation.SetNodeReferenceID(module.mrml.PROBABILITY_VOLUME_ROLE, elsewhere.GetID())
    outcome = _logic(module).measureSegmentation(segmentation, volume, tableNode=outcome.table_node)
    (row,) = module.mrml.lesion_table_rows(outcome.table_node)
    assert row["Volume"] == pytest.approx(1.92, abs=0.0051) and row["Tumor probability"] in ("", "nan", None)
    assert row["Peak tumor probability"] in ("", "nan", None)
    # ... and says so (the column was left empty without a word), once, kept with the table
    said = [w for w in outcome.warnings if "is not on the grid of the CT" in w]
    assert len(said) == 1 and f"'{elsewhere.GetName()}'" in said[0] and "Tumor probability column is left empty" in said[0]
    assert said == [w for w in module.mrml.lesion_table_warnings(outcome.table_node) if "not on the grid" in w]


def test_update_lesion_table_refuses_a_segmentation_without_the_modules_segments(module):
    _, volume, _ = _scene_with_result(module)
    other = module.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "someone else's")
    other.GetSegmentation().AddEmptySegment("kidney", "Kidney")
    with pytest.raises(InputError, match="has no Liver or Liver tumor segment"):
        _logic(module).measureSegmentation(other, volume)
    assert list(module.temp.iterdir()) == []


def test_update_lesion_table_refuses_a_segmentation_under_a_non_linear_transform_at_the_start(module):
    """Read leniently, the placement of a segmentation under a warp ran the child to the end and was then reported as
    'moved or changed while it was measured', on every try; it is refused at the start with what to do, as a
    segmentation run refuses it."""
    _, volume, segmentation = _scene_with_result(module)
    segmentation.SetAndObserveTransformNodeID(add_warp_transform_node(module.scene, "warp").GetID())
    with pytest.raises(InputError, match="under the non-linear transform 'warp'.*Harden"):
        _logic(module).measureSegmentation(segmentation, volume)
    assert list(module.temp.iterdir()) == []


def test_cancelled_update_leaves_the_table_as_it_was(module):
    from test_slicer_module_logic import FakeTimer

    phantom, volume, segmentation = _scene_with_result(module)
    logic = _logic(module)
    table = logic.measureSegmentation(segmentation, volume).table_node
    rows_before = str(module.mrml.lesion_table_rows(table))
    module.mrml.labels_to_segmentation_node(module.scene, _edited(phantom.labels), GEOMETRY,
                                            segmentation_node=segmentation)
    outcomes = []
    running = logic.measureSegmentation(segmentation, volume, tableNode=table, waitForCompletion=False,
                                        onFinished=outcomes.append)
    assert isinstance(running, module.m.measure_job.MeasureJob) and running.child_pid
    running.cancel()
    FakeTimer.instances[-1].fire()
    assert [o.kind for o in outcomes] == ["cancelled"]
    assert str(module.mrml.lesion_table_rows(table)) == rows_before
    assert list(module.temp.iterdir()) == []


def test_widget_has_an_update_lesion_table_button_that_runs_in_a_child():
    """Static: the button is connected, runs the Logic's child-process measure without blocking, checks the
    packages first, and a running measure and a running segmentation exclude each other."""
    text = MODULE_FILE.read_text(encoding="utf-8")
    widget = next(n for n in ast.parse(text).body if isinstance(n, ast.ClassDef) and n.name == "LiverTumorSegWidget")
    methods = {f.name: ast.get_source_segment(text, f) for f in widget.body if isinstance(f, ast.FunctionDef)}
    assert 'self.ui.measureButton.connect("clicked(bool)", self.onMeasureButton)' in methods["setup"]
    handler = methods["onMeasureButton"]
    assert "if not self.dependenciesReady():" in handler
    assert "self.logic.measureSegmentation(" in handler and "waitForCompletion=False" in handler
    assert "onFinished=self.onMeasureFinished" in handler
    assert "self.resultSummary(outcome, selected)" in methods["onMeasureFinished"]  # panel_text.summary_text
    gui = methods["updateGUI"]
    assert "self.ui.segmentButton.enabled, self.ui.segmentButton.toolTip = panel_text.segment_button_state(" in gui
    assert "running, ready, measuring, notCT, self._installingPackages)" in gui
    assert "self.ui.measureButton.enabled, self.ui.measureButton.toolTip = panel_text.measure_button_state(" in gui
    assert "measuring, running, bool(p.inputVolume), " \
           "bool(mrml.existing_output_segment_ids(p.outputSegmentation))" in gui
    assert "job.output_for_input(p.inputVolume, p.outputSegmentation) is p.outputSegmentation, " \
           "self._installingPackages)" in gui


def test_update_lesion_table_refuses_another_cts_segmentation(module):
    """Measured on another CT, a segmentation's lesions got that CT's HU (another phase), or failed on another
    grid. The button was greyed out for it, but the logic call measured it; now the job refuses it."""
    phantom, volume, segmentation = _scene_with_result(module)
    segmentation.SetNodeReferenceID(segmentation.GetReferenceImageGeometryReferenceRole(), volume.GetID())
    arterial = add_volume_node(module.scene, phantom.ct.array + 60, phantom.ct.geometry, "arterial CT")
    tables = module.scene.GetNumberOfNodesByClass("vtkMRMLTableNode")
    with pytest.raises(InputError, match="was made on the CT 'phantom CT', not on 'arterial CT'"):
        _logic(module).measureSegmentation(segmentation, arterial)
    assert module.scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == tables
    assert list(module.temp.iterdir()) == []
    outcome = _logic(module).measureSegmentation(segmentation, volume)  # its own CT is measured
    assert len(module.mrml.lesion_table_rows(outcome.table_node)) == 1


def test_lesions_a_reader_drew_under_their_own_names_are_measured_and_other_segments_are_named(module):
    """Segments named 'Lesion no 2' or 'HCC' were left out of the lesion table without a word (any 'no ' in a
    name counted as a negation, and 'HCC' holds no tumor word). They are lesions now; a segment that is neither
    liver nor tumor by name ('Portal vein') is named in the outcome's warnings."""
    phantom, volume, segmentation = _scene_with_result(module)
    drawn = np.zeros(phantom.labels.shape, np.uint8)
    drawn[4:8, 20:26, 14:19] = 1  # 120 voxels of 16 mm^3 = 1.92 mL
    drawn[14:16, 40:44, 40:44] = 2  # 32 voxels = 0.512 mL
    drawn[2:4, 10:12, 30:32] = 3  # 8 voxels
    scratch = module.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "scratch")  # makes each drawn segment
    for value, name in {1: "Lesion no 2", 2: "HCC", 3: "Portal vein"}.items():
        module.mrml.labels_to_segmentation_node(module.scene, (drawn == value).astype(np.uint8), GEOMETRY,
                                                segmentation_node=scratch)
        segment = scratch.GetSegmentation().GetSegment(module.mrml.SEGMENTS[0].segment_id)  # the mask as "Liver"
        copy_id = segmentation.GetSegmentation().AddEmptySegment("", name)
        segmentation.GetSegmentation().GetSegment(copy_id).DeepCopy(segment)
        segmentation.GetSegmentation().GetSegment(copy_id).SetName(name)
    outcome = _logic(module).measureSegmentation(segmentation, volume)
    volumes = sorted(row["Volume"] for row in module.mrml.lesion_table_rows(outcome.table_node))
    assert len(volumes) == 3
    assert volumes[0] == pytest.approx(0.512, abs=0.0051) and volumes[1] == pytest.approx(1.92, abs=0.0051)
    assert volumes[2] == pytest.approx(phantom.lesions[0].volume_ml, abs=0.0051)
    (left_out,) = [w for w in outcome.warnings if "left out" in w]
    assert "'Portal vein'" in left_out and "Lesion no 2" not in left_out and "HCC" not in left_out
    assert module.mrml.lesion_table_warnings(outcome.table_node) == outcome.warnings  # shown again after a reload


def test_a_ct_moved_while_its_lesions_are_measured_leaves_the_table_as_it_was(module):
    """A transform applied to the CT during *Update lesion table*: the report's positions were measured where
    the lesions had been, and the table's RECIST axes were then drawn 40 mm from the lesion. Now refused."""
    import vtk

    phantom, volume, segmentation = _scene_with_result(module)
    logic = _logic(module)
    table = logic.measureSegmentation(segmentation, volume).table_node
    rows_before = str(module.mrml.lesion_table_rows(table))
    running = logic.measureSegmentation(segmentation, volume, tableNode=table, waitForCompletion=False)
    shift = module.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(2, 3, 40.0)
    shift.SetMatrixTransformToParent(matrix)
    volume.SetAndObserveTransformNodeID(shift.GetID())
    segmentation.SetAndObserveTransformNodeID(shift.GetID())
    with pytest.raises(InputError, match="was moved or changed while it was measured"):
        running.wait(timeout_s=60)
    assert str(module.mrml.lesion_table_rows(table)) == rows_before
    assert list(module.temp.iterdir()) == []


class _ReportWritingRunner:
    """A stand-in ``measure`` child (a bare Python, fast) that writes ``text`` as its report and exits 0."""

    def __new__(cls, text):
        from LiverTumorSegModuleLib.childprocess import SubprocessRunner

        class Runner(SubprocessRunner):
            def start(self, program, args, env=None):
                out = args[args.index("-o") + 1]
                super().start(sys.executable, ["-c", "import sys; open(sys.argv[1], 'w').write(sys.argv[2])", out,
                                               text], env)
        return Runner()


_AXIS = {"end_points_ras_mm": [[20.0, -5.0, 110.0], [30.0, -5.0, 110.0]]}
_REPORT = {"liver_volume_ml": 1500.0, "tumor_volume_ml": 2.0, "tumor_burden_percent": 0.13,
           "lesions": [{"id": 1, "volume_ml": 2.0, "long_axis": _AXIS, "centroid_ras_mm": [25.0, -5.0, 110.0]}]}


@pytest.mark.parametrize("text", ['{"liver_volume_ml": 1500.0, "lesio',
                                  json.dumps(dict(_REPORT, lesions=[{"id": 1, "volume_ml": "2 mL"}]))],
                         ids=["truncated", "a volume as text"])
def test_a_measure_report_that_cannot_be_used_leaves_the_table_and_its_axes_as_they_were(module, text):
    """A report with a lesion volume as text took the axes drawn for the table's rows off the views and failed with
    "could not convert string to float"; a truncated one with "Expecting value". Both now say that the result could
    not be used and that the scene was not changed."""
    _, volume, segmentation = _scene_with_result(module)
    made = lambda: _ReportWritingRunner(json.dumps(_REPORT))  # noqa: E731
    table = module.m.LiverTumorSegLogic(runnerFactory=made, python=sys.executable).measureSegmentation(
        segmentation, volume).table_node
    axes = module.mrml.focus_on_table_lesion(module.scene, table, 1)
    rows_before = str(module.mrml.lesion_table_rows(table))
    logic = module.m.LiverTumorSegLogic(runnerFactory=lambda: _ReportWritingRunner(text), python=sys.executable)
    with pytest.raises(module.m.job.ChildResultError, match="The measuring process ended without an error, but "
                       "its result could not be used .report.json: .*The scene was not changed"):
        logic.measureSegmentation(segmentation, volume, tableNode=table)
    assert str(module.mrml.lesion_table_rows(table)) == rows_before
    assert all(module.scene.IsNodePresent(node) for node in axes) and len(axes) == 1
    assert list(module.temp.iterdir()) == []


def test_update_lesion_table_from_a_script_without_its_table_refills_the_segmentations_table(module):
    """``logic.measureSegmentation(segmentation, ct)`` from a script (no ``tableNode``) made a new lesion table on
    every call beside the one linked to the segmentation; it now refills that one."""
    _, volume, segmentation = _scene_with_result(module)
    logic = module.m.LiverTumorSegLogic(runnerFactory=lambda: _ReportWritingRunner(json.dumps(_REPORT)),
                                        python=sys.executable)
    first = logic.measureSegmentation(segmentation, volume)
    again = logic.measureSegmentation(segmentation, volume)
    assert again.table_node is first.table_node
    assert module.scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 1


def test_segments_edited_while_they_are_measured_get_a_warning_that_the_table_lists_them_as_they_were(module):
    """A reader who clicked *Update lesion table* and went on correcting the tumor in Segment Editor while the child
    measured (seconds: its start-up alone) read "Lesion table updated from the segments" over a table without that
    correction. The outcome now says which segments changed meanwhile; a run without edits says nothing of it."""
    import slicer

    phantom, volume, segmentation = _scene_with_result(module)
    logic = module.m.LiverTumorSegLogic(runnerFactory=lambda: _ReportWritingRunner(json.dumps(_REPORT)),
                                        python=sys.executable)
    untouched = logic.measureSegmentation(segmentation, volume)
    assert not [w for w in untouched.warnings if "while they were measured" in w]
    painted = np.zeros(phantom.labels.shape, np.uint8)
    painted[4:6, 20:22, 14:16] = 1  # eight voxels added to the tumor, as Segment Editor's Paint writes them
    running = logic.measureSegmentation(segmentation, volume, tableNode=untouched.table_node, waitForCompletion=False)
    segments = slicer.vtkSlicerSegmentationsModuleLogic
    segments.SetBinaryLabelmapToSegment(module.mrml.oriented_image_from_array(painted, GEOMETRY), segmentation,
                                        module.mrml.TUMOR_SEGMENT.segment_id, segments.MODE_MERGE_MAX)
    edited = running.wait(timeout_s=60)
    assert edited.kind == "done" and edited.warnings[0] == (
        "The segment(s) ['Liver tumor'] of 'Liver segmentation' were edited, added, removed or renamed while they were "
        "measured; the lesion table lists the segments as they were when 'Update lesion table' was clicked. Update it "
        "again to measure them as they are now.")
    running = logic.measureSegmentation(segmentation, volume, tableNode=edited.table_node, waitForCompletion=False)
    segmentation.GetSegmentation().GetSegment(module.mrml.LIVER_SEGMENT.segment_id).SetName("Liver (corrected)")
    renamed = running.wait(timeout_s=60)
    assert "['Liver (corrected)']" in renamed.warnings[0]


def test_ct_voxels_edited_while_the_segments_are_measured_get_the_segment_runs_warning(module):
    """The Segment run warns when the CT's voxels are changed while it runs ("were changed while it was segmented");
    *Update lesion table* fingerprinted the segments only, so a CT masked in place meanwhile (Segment Editor's
    Mask volume, a script's arrayFromVolume edit) gave "Lesion table updated" over mean HU of the CT as it had been.
    It now warns the same way; an untouched CT gives no such warning."""
    import slicer

    _, volume, segmentation = _scene_with_result(module)
    logic = module.m.LiverTumorSegLogic(runnerFactory=lambda: _ReportWritingRunner(json.dumps(_REPORT)),
                                        python=sys.executable)
    untouched = logic.measureSegmentation(segmentation, volume)
    assert not [w for w in untouched.warnings if "were changed while" in w]
    running = logic.measureSegmentation(segmentation, volume, tableNode=untouched.table_node, waitForCompletion=False)
    voxels = slicer.util.arrayFromVolume(volume)
    voxels[0] = -1000  # masked, in place
    slicer.util.arrayFromVolumeModified(volume)
    edited = running.wait(timeout_s=60)
    assert edited.kind == "done" and edited.warnings[0] == (
        "The voxels of the CT 'phantom CT' were changed while its segments were measured; the lesion table is of the "
        "CT as it was when 'Update lesion table' was clicked. Update it again to measure the CT as it is now.")


def test_empty_segments_are_warned_of_in_the_panels_words_not_as_a_label_map_file(module):
    """A reader who erased the Liver and Liver tumor segments and clicked "Update lesion table" was told that "the
    label map holds no liver and no tumor ... check that it is the right file (segment writes 1 = liver, 2 =
    tumor)": the command line's words for a file the panel user never gave."""
    phantom, volume, segmentation = _scene_with_result(module)
    module.mrml.labels_to_segmentation_node(module.scene, np.zeros_like(phantom.labels), GEOMETRY,
                                            segmentation_node=segmentation)
    outcome = _logic(module).measureSegmentation(segmentation, volume)
    (warning,) = outcome.warnings
    assert warning.startswith("the Liver and Liver tumor segments are empty: the liver volume 0.0 mL")
    assert "file" not in warning and "segment writes" not in warning and "click Segment" in warning
    tumor_only = phantom.labels.copy()
    tumor_only[tumor_only == 1] = 0
    module.mrml.labels_to_segmentation_node(module.scene, tumor_only, GEOMETRY, segmentation_node=segmentation)
    (warning,) = _logic(module).measureSegmentation(segmentation, volume, tableNode=outcome.table_node).warnings
    assert warning.startswith("the Liver tumor segment holds voxels but the Liver segment is empty: the liver volume "
                              "counts the tumor alone")


def test_update_lesion_table_hands_the_dicom_slice_thickness_to_the_child(module, monkeypatch):
    """The child measures a NIfTI copy of the CT, which records no thickness: a volume that Slicer's DICOM module
    loaded from 9 mm slices (every 4 mm) was judged by the 4 mm spacing (minimum 10 mm). The job now reads the
    SliceThickness from the DICOM database by the node's instance UIDs and gives it (minimum 18 mm, source
    'given')."""
    import slicer

    from test_slicer_module_job import _StubDicomDatabase

    _, volume, segmentation = _scene_with_result(module)
    volume.SetAttribute("DICOM.instanceUIDs", "1.2.1 1.2.2")
    monkeypatch.setattr(slicer, "dicomDatabase", _StubDicomDatabase(
        {("1.2.1", "0018,0050"): "9", ("1.2.2", "0018,0050"): "9.0"}), raising=False)
    recist = _logic(module).measureSegmentation(segmentation, volume).report["recist"]
    assert (recist["slice_thickness_mm"], recist["slice_thickness_source"]) == (9.0, "given")
    assert recist["measurable_minimum_mm"] == pytest.approx(18.0)
    monkeypatch.setattr(slicer, "dicomDatabase", None)  # no DICOM module: the spacing, as before
    recist = _logic(module).measureSegmentation(segmentation, volume).report["recist"]
    assert (recist["slice_thickness_mm"], recist["slice_thickness_source"]) == (4.0, "slice spacing")


_FAILING_MEASURE = """
import sys
args = sys.argv[1:]
ct = args[args.index("--ct") + 1]
sys.stderr.write("reading the label map\\n")
if "{mode}" == "user error":
    sys.stderr.write("error: '" + ct + "' holds NaN voxels; check the export and load the CT again.\\n")
    sys.exit(2)
sys.stderr.write("Traceback (most recent call last):\\nMemoryError: cannot allocate 12 GiB for '" + ct + "'\\n")
sys.exit(1)
"""


def _failing_measure_runner(module, mode):
    """A runner that starts, in place of ``-m LiverTumorSegLib measure ...``, a child that fails as ``mode`` says
    ("user error": exit 2 with an ``error:`` line naming the handed-over CT; else a crash: exit 1 with a traceback)."""
    class FailingMeasureRunner(module.m.childprocess.SubprocessRunner):
        def start(self, program, args, env=None):
            assert list(args[:3]) == ["-m", "LiverTumorSegLib", "measure"]
            super().start(sys.executable, ["-c", _FAILING_MEASURE.replace("{mode}", mode)] + list(args[3:]), env)
    return FailingMeasureRunner


@pytest.mark.parametrize("mode", ["user error", "crash"])
def test_a_measuring_that_fails_names_the_ct_not_its_temporary_file_and_leaves_the_table_as_it_was(module, mode):
    """The child's message names the temporary copy of the CT it was handed; the panel names the volume instead (the
    copy is gone once the job ends), and the table, its rows and the temporary folder are as before the run."""
    phantom, volume, segmentation = _scene_with_result(module)
    table = _logic(module).measureSegmentation(segmentation, volume).table_node
    rows_before = str(module.mrml.lesion_table_rows(table))
    tables_before = module.scene.GetNumberOfNodesByClass("vtkMRMLTableNode")
    logic = module.m.LiverTumorSegLogic(runnerFactory=_failing_measure_runner(module, mode), python=sys.executable)
    expected = module.m.measure_job.MeasureProcessError if mode == "user error" else RuntimeError
    with pytest.raises(expected) as raised:
        logic.measureSegmentation(segmentation, volume, tableNode=table)
    message = str(raised.value)
    assert "ct.nii" not in message and str(module.temp) not in message
    if mode == "user error":
        assert message == "Volume 'phantom CT' holds NaN voxels; check the export and load the CT again."
    else:
        assert message == ("The measuring process ended with exit code 1 (MemoryError: cannot allocate 12 GiB for "
                           "Volume 'phantom CT').")
    assert str(module.mrml.lesion_table_rows(table)) == rows_before
    assert module.scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == tables_before
    assert list(module.temp.iterdir()) == []


def test_a_segment_renamed_to_say_it_is_no_tumor_is_left_out_whatever_its_id(module):
    """A segment with the ID 'tumor' (a label-map import, another tool's .seg.nrrd) that the reader renamed 'Simple
    cyst (benign)' was still measured as a lesion by its ID: Update lesion table counted it (one row more, 1.92 mL)
    and no warning named it (the panel audit, 1 Dec 2026). The name, which the reader sees and edits, decides."""
    phantom, volume, segmentation = _scene_with_result(module)
    before = len(module.mrml.lesion_table_rows(_logic(module).measureSegmentation(segmentation, volume).table_node))
    drawn = np.zeros(phantom.labels.shape, np.uint8)
    drawn[4:8, 20:26, 14:19] = 1
    scratch = module.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "scratch")
    module.mrml.labels_to_segmentation_node(module.scene, drawn, GEOMETRY, segmentation_node=scratch)
    segments = segmentation.GetSegmentation()
    segments.AddEmptySegment("tumor", "tumor")
    segments.GetSegment("tumor").DeepCopy(scratch.GetSegmentation().GetSegment(module.mrml.SEGMENTS[0].segment_id))
    segments.GetSegment("tumor").SetName("Simple cyst (benign)")
    labels = module.mrml.segmentation_to_labels(segmentation, GEOMETRY, phantom.labels.shape)
    assert not (labels[4:8, 20:26, 14:19] == 2).any()
    assert "Simple cyst (benign)" in module.mrml.left_out_warning(segmentation)
    outcome = _logic(module).measureSegmentation(segmentation, volume)
    assert len(module.mrml.lesion_table_rows(outcome.table_node)) == before


def test_the_tools_own_segments_renamed_are_judged_by_their_new_names_as_measure_reads_the_file(module, tmp_path):
    """This tool's own "Liver tumor" (fixed ID) renamed "Simple cyst (benign)" stayed a lesion in the panel's table
    (tumor 2.32 mL, one lesion) while `measure` of the saved .seg.nrrd left it out; its "Liver" renamed "Liver
    (corrected)" stayed liver in the panel and was dropped by `measure` (liver 2.32 mL, burden 100 %): the slicer-core
    audit. Both now go by the name, and "Liver (corrected)" is liver in both."""
    import json
    import subprocess

    import slicer

    phantom, volume, segmentation = _scene_with_result(module)
    tumor_id, liver_id = (spec.segment_id for spec in reversed(module.mrml.SEGMENTS))
    assert {spec.label: spec.segment_id for spec in module.mrml.SEGMENTS} == {1: liver_id, 2: tumor_id}
    segments = segmentation.GetSegmentation()

    def measured(name_of, label_file):
        for segment_id, name in name_of.items():
            segments.GetSegment(segment_id).SetName(name)
        report = _logic(module).measureSegmentation(segmentation, volume).report
        storage = slicer.vtkMRMLSegmentationStorageNode()
        module.scene.AddNode(storage)
        storage.SetFileName(str(tmp_path / label_file))
        assert storage.WriteData(segmentation)
        subprocess.run([sys.executable, "-m", "LiverTumorSegLib", "measure", str(tmp_path / label_file), "-o",
                        str(tmp_path / "r.json"), "--overwrite", "--no-progress"], check=True, capture_output=True)
        by_file = json.loads((tmp_path / "r.json").read_text())
        return [(round(r["liver_volume_ml"], 2), round(r["tumor_volume_ml"], 2), len(r["lesions"]))
                for r in (report, by_file)]

    liver_ml = round(float((phantom.labels >= 1).sum()) * 16.0 / 1000.0, 2)
    panel, by_file = measured({tumor_id: "Simple cyst (benign)"}, "cyst.seg.nrrd")
    parenchyma_ml = round(float((phantom.labels == 1).sum()) * 16.0 / 1000.0, 2)
    assert panel == by_file == (parenchyma_ml, 0.0, 0)
    assert "Simple cyst (benign)" in module.mrml.left_out_warning(segmentation)
    panel, by_file = measured({tumor_id: "Liver tumor", liver_id: "Liver (corrected)"}, "corrected.seg.nrrd")
    assert panel == by_file and panel[0] == liver_ml and panel[2] == 1
    assert module.mrml.left_out_warning(segmentation) == ""
    assert module.mrml.existing_output_segment_ids(segmentation) == [liver_id, tumor_id]  # a re-run replaces them


def test_tumor_segments_that_touch_are_named_in_the_panel_as_measure_names_them(module):
    """A tumor split into two touching segments ('Liver tumor' and 'Liver tumor_2', as Split islands names them) was
    one lesion in the panel's table without a word, while `measure` of the saved .seg.nrrd names them: the panel
    hands the segments over as one label map. It names them now; apart by a voxel, they are two lesions, unnamed."""
    phantom, volume, segmentation = _scene_with_result(module)
    edited = _edited(phantom.labels)
    module.mrml.labels_to_segmentation_node(module.scene, edited, GEOMETRY, segmentation_node=segmentation)
    second = np.zeros(edited.shape, np.uint8)
    second[4:8, 20:26, 17:19] = 1  # the box's last two columns, as a second segment touching the first
    first = (edited == 2) & (second == 0)
    scratch = module.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "scratch")
    segments = segmentation.GetSegmentation()
    tumor_id = module.mrml.SEGMENTS[1].segment_id
    for mask, segment_id in ((first, tumor_id), (second.astype(bool), "split_2")):
        module.mrml.labels_to_segmentation_node(module.scene, mask.astype(np.uint8), GEOMETRY,
                                                segmentation_node=scratch)
        if segments.GetSegment(segment_id) is None:
            segments.AddEmptySegment(segment_id, "Liver tumor_2")
        segments.GetSegment(segment_id).DeepCopy(
            scratch.GetSegmentation().GetSegment(module.mrml.SEGMENTS[0].segment_id))
    segments.GetSegment("split_2").SetName("Liver tumor_2")
    segments.GetSegment(tumor_id).SetName("Liver tumor")
    outcome = _logic(module).measureSegmentation(segmentation, volume)
    assert len(outcome.report["lesions"]) == 1
    said = [w for w in outcome.warnings if "touch" in w]
    assert len(said) == 1 and "('Liver tumor' and 'Liver tumor_2')" in said[0] and "one lesion" in said[0]
    apart = second.copy()
    apart[:, :, 17] = 0  # a column of liver between them
    module.mrml.labels_to_segmentation_node(module.scene, apart, GEOMETRY, segmentation_node=scratch)
    segments.GetSegment("split_2").DeepCopy(scratch.GetSegmentation().GetSegment(module.mrml.SEGMENTS[0].segment_id))
    segments.GetSegment("split_2").SetName("Liver tumor_2")
    outcome = _logic(module).measureSegmentation(segmentation, volume)
    assert len(outcome.report["lesions"]) == 2 and not [w for w in outcome.warnings if "touch" in w]


def test_a_tumor_segment_named_after_another_organ_is_named_in_the_panel_as_measure_names_it(module):
    """measure of a saved .seg.nrrd names a tumor segment whose name mentions another organ ('Kidney tumor': still
    measured as a liver lesion); the panel hands the segments over as one label map, so its child never saw the
    names and the lesion table said nothing. It says it now, in measure's words."""
    from LiverTumorSegLib.segnrrd import other_organ_tumor_text

    phantom, volume, segmentation = _scene_with_result(module)
    outcome = _logic(module).measureSegmentation(segmentation, volume)
    assert not [w for w in outcome.warnings if "mention another organ" in w]
    tumor = segmentation.GetSegmentation().GetSegment(module.mrml.SEGMENTS[1].segment_id)
    tumor.SetName("Kidney tumor")
    outcome = _logic(module).measureSegmentation(segmentation, volume)
    said = [w for w in outcome.warnings if "mention another organ" in w]
    assert said == [other_organ_tumor_text(["Kidney tumor"], f"'{segmentation.GetName()}'")]
    assert outcome.report["lesions"]  # still measured as liver lesions
