"""The Slicer module's follow-up comparison (LiverTumorSegLogic.compareWithBaseline) and its widget wiring, headless:
the Logic runs with the same stand-ins as Testing/Python/test_slicer_module_logic.py (real MRML from slicer-core)."""
import ast
import re
from pathlib import Path

import numpy as np
import pytest

from test_slicer_module_logic import module  # noqa: F401 - the module-under-test fixture

from LiverTumorSegLib.phantom import PhantomLesion, make_phantom
from mrml_helpers import add_volume_node

MODULE_FILE = Path(__file__).resolve().parents[2] / "LiverTumorSeg" / "LiverTumorSeg.py"


def _ct_and_segmentation(scene, mrml, phantom, name):
    volume = add_volume_node(scene, phantom.ct.array, phantom.ct.geometry, name + " CT")
    return volume, mrml.labels_to_segmentation_node(scene, phantom.labels, phantom.ct.geometry)


def test_logic_compare_with_baseline_fills_the_change_table(module):
    base = make_phantom((20, 64, 64), (2.0, 2.0, 4.0), lesions=[PhantomLesion((10, 22, 16), 6.0, 15.0)],
                        noise_hu=5.0, origin=(-60.0, -40.0, 90.0))
    follow = make_phantom((20, 64, 64), (2.0, 2.0, 4.0), lesions=[PhantomLesion((10, 22, 16), 9.0, 15.0),
                                                                 PhantomLesion((12, 20, 26), 5.0, 20.0)],
                          noise_hu=5.0, origin=(-52.0, -45.0, 98.0), seed=1)
    base_nodes = _ct_and_segmentation(module.scene, module.mrml, base, "baseline")
    follow_nodes = _ct_and_segmentation(module.scene, module.mrml, follow, "follow-up")
    change, table = module.m.LiverTumorSegLogic.compareWithBaseline(
        base_nodes[1], base_nodes[0], follow_nodes[1], follow_nodes[0], alignOnCT=True)
    assert change["alignment"]["method"] == "ct"
    np.testing.assert_allclose(change["alignment"]["translation_lps_mm"], [8.0, -5.0, 8.0], atol=1.0)
    assert change["response"] == "PD" and sorted(e["status"] for e in change["lesions"]) == ["grown", "new"]
    rows = module.mrml.change_table_rows(table)
    assert sorted(r["Status"] for r in rows) == ["grown", "new"]
    again, same = module.m.LiverTumorSegLogic.compareWithBaseline(
        base_nodes[1], base_nodes[0], follow_nodes[1], follow_nodes[0], alignOnCT=False, tableNode=table)
    assert same is table and again["alignment"]["method"] == "liver"


def test_widget_connects_the_table_selection_and_builds_the_compare_section():
    """Static: the widget's setup connects the lesion table's selection to the axis drawing and builds the
    compare section; the handlers call the tested MRML helpers (the widget itself needs a real Slicer)."""
    text = MODULE_FILE.read_text(encoding="utf-8")
    tree = ast.parse(text)
    widget = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "LiverTumorSegWidget")
    methods = {f.name: ast.get_source_segment(text, f) for f in widget.body if isinstance(f, ast.FunctionDef)}
    assert 'self.ui.lesionTableView.connect("selectionChanged()", self.onLesionSelectionChanged)' in methods["setup"]
    assert "self.setupCompareSection()" in methods["setup"]
    assert "mrml.focus_on_table_lesion(" in methods["onLesionSelectionChanged"]
    assert "self.logic.compareWithBaseline(" in methods["onCompareButton"]
    assert re.search(r"followup\.change_summary_lines\(", methods["onCompareButton"])
