"""scripts/fluid_rim_lever.py: the prototype step removes water-density tumor lying outside the liver's outline and
nothing else (phantoms with known answers)."""
import numpy as np

from script_helpers import load_script

LEVER = load_script("scripts/fluid_rim_lever.py", "fluid_rim_lever")


def _phantom():
    """(4, 80, 80) (z, y, x): a disc of liver (label 1, 100 HU, radius 25 px) in 40 HU tissue."""
    yy, xx = np.mgrid[:80, :80]
    r = np.hypot(yy - 40, xx - 40)
    labels = np.zeros((4, 80, 80), np.uint8)
    labels[:, r <= 25] = 1
    hu = np.full((4, 80, 80), 40.0, np.float32)
    hu[labels == 1] = 100.0
    return labels, hu, r, yy, xx


def test_a_water_rim_outside_the_liver_is_removed_and_a_cyst_inside_is_kept():
    labels, hu, r, yy, xx = _phantom()
    rim = (r > 25) & (r <= 29) & (xx < 30)          # an arc against the disc's left side, outside it
    cyst = np.hypot(yy - 40, xx - 45) <= 5           # inside the liver
    labels[:, rim] = 2
    labels[:, cyst] = 2
    hu[:, rim] = 10.0
    hu[:, cyst] = 5.0
    out = LEVER.apply_fluid_rim_step(labels, hu)
    assert (out[:, rim] == 0).all()                  # background, not liver
    assert (out[:, cyst] == 2).all()
    assert np.array_equal(out[labels == 1], labels[labels == 1])


def test_a_rim_of_tissue_density_and_an_edge_lesion_mostly_inside_stay():
    labels, hu, r, yy, xx = _phantom()
    rim = (r > 25) & (r <= 29) & (xx < 30)
    labels[:, rim] = 2
    hu[:, rim] = 60.0                                # not water: a lesion of soft tissue, left to the other rules
    edge = (np.hypot(yy - 40, xx - 64) <= 6)         # a water lesion at the liver's edge, most of it inside
    labels[:, edge & (r <= 27)] = 2
    hu[:, edge & (r <= 27)] = 10.0
    out = LEVER.apply_fluid_rim_step(labels, hu)
    assert (out[:, rim] == 2).all()
    assert (out[:, edge & (r <= 27)] == 2).all()
    share = LEVER.outside_hull_share(edge & (r <= 27) & np.ones((4, 1, 1), bool), labels == 1)
    assert share < 0.5


def test_outside_share_of_a_component_on_a_slice_without_liver_is_one():
    comp = np.zeros((2, 10, 10), bool)
    comp[1, 4:6, 4:6] = True
    liver = np.zeros((2, 10, 10), bool)
    liver[0, 2:8, 2:8] = True                        # liver on the other slice only
    assert LEVER.outside_hull_share(comp, liver) == 1.0


def test_the_second_arm_keeps_a_round_water_lesion_bulging_out_and_removes_a_layer():
    labels, hu, r, yy, xx = _phantom()
    rim = (r > 25) & (r <= 29) & (xx < 30)                     # a layer 4 px thick along the left side
    blob = np.hypot(yy - 40, xx - 68) <= 6                      # a round lesion two thirds outside the disc
    labels[:, rim] = 2
    labels[:, blob] = 2
    hu[:, rim] = 10.0
    hu[:, blob] = 10.0
    assert LEVER.layer_shape(np.broadcast_to(blob, (4, 80, 80)).copy()) < 1.0   # a disc: about 0.8
    assert LEVER.layer_shape(np.broadcast_to(rim, (4, 80, 80)).copy()) >= 3.0
    first = LEVER.apply_fluid_rim_step(labels, hu, arm=1)
    second = LEVER.apply_fluid_rim_step(labels, hu, arm=2)
    assert (first[:, blob] == 0).all() and (first[:, rim] == 0).all()   # the hull alone takes both
    assert (second[:, blob] == 2).all() and (second[:, rim] == 0).all()


def test_help_usage_and_missing_arguments(tmp_path, capsys):
    """--help exited 1 (the module text as sys.exit's message), `segment CT` was an IndexError traceback."""
    import subprocess
    import sys

    from script_helpers import ROOT

    script = str(ROOT / "scripts" / "fluid_rim_lever.py")
    shown = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, cwd=str(tmp_path))
    assert shown.returncode == 0 and "fluid-rim lever" in shown.stdout and not shown.stderr
    short = subprocess.run([sys.executable, script, "segment", "CT"], capture_output=True, text=True,
                           cwd=str(tmp_path))
    assert short.returncode == 2 and short.stderr.startswith("usage: ") and "Traceback" not in short.stderr
    assert "segment needs a CT" in short.stderr
    for argv, said in (([], "give a command"), (["nosuch"], "unknown command 'nosuch'")):
        assert LEVER.main(argv) == 2
        err = capsys.readouterr().err
        assert said in err and err.startswith("usage: ")
    missing = str(tmp_path / "ct.nii.gz")
    assert LEVER.main(["segment", missing, missing, "default"]) == 2
    assert capsys.readouterr().err == f"error: CT '{missing}' does not exist.\n"


def test_a_table_of_the_patched_post_processing_is_not_stored_in_the_package(capsys, monkeypatch):
    """FLUID_RIM=1 robustness ... --store-in-package stored the patched post-processing's table as the package's."""
    monkeypatch.setattr(LEVER, "_patch_postprocessing", lambda *a: pytest.fail("post-processing was patched"))
    monkeypatch.setenv("FLUID_RIM", "1")
    assert LEVER.main(["robustness", "default", "--data", "x", "--store-in-package"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ") and "--store-in-package is refused with FLUID_RIM set" in err
