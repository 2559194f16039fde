"""models.monai_import: a segment-only process imports MONAI with its optional plotting/signal packages hidden;
the U-Net is the same network (same outputs), the packages import normally afterwards, and a MONAI that needs a
hidden package falls back to a normal import. Each case runs in a fresh interpreter (nothing is hidden in this
test process, which only saves a tiny package)."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("monai")

REPO = Path(__file__).resolve().parents[2]

_FORWARD = """
import json, sys, torch
from LiverTumorSegLib.models import monai_import
if {hide}:
    monai_import.hide_optional_packages_while_importing_monai()
from LiverTumorSegLib.models import build_model
torch.manual_seed(0)
net = build_model("unet", in_channels=3, num_classes=3, channels=(4, 8, 16)).eval()
x = torch.linspace(-1, 1, 2 * 3 * 20 * 24).reshape(2, 3, 20, 24)
with torch.no_grad():
    y = net(x)
hidden_loaded = sorted(n for n in monai_import.OPTIONAL_PACKAGES_HIDDEN if sys.modules.get(n) is not None)
blocked_left = sorted(n for n in monai_import.OPTIONAL_PACKAGES_HIDDEN if n in sys.modules and sys.modules[n] is None)
import scipy.stats  # importable again afterwards
print(json.dumps({{"values": y.flatten()[::37].tolist(), "sum": float(y.double().sum()),
                  "hidden_loaded": hidden_loaded, "blocked_left": blocked_left,
                  "facts": monai_import.monai_import_facts()}}))
"""


_CALLERS_STATE_AROUND_THE_FIRST_UNET = """
import json, logging, os, warnings
from LiverTumorSegLib.models import monai_import
os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
os.environ["LIVERTUMORSEG_TEST_KEPT"] = "1"
showwarning = warnings.showwarning
filters = list(logging.getLogger("py.warnings").filters)
from LiverTumorSegLib.models import build_model
build_model("unet", in_channels=1, num_classes=3, channels=(4, 8))
print(json.dumps({"showwarning": warnings.showwarning is showwarning,
                  "filters": logging.getLogger("py.warnings").filters == filters,
                  "cublas": os.environ.get("CUBLAS_WORKSPACE_CONFIG"), "kept": os.environ["LIVERTUMORSEG_TEST_KEPT"],
                  "monai": monai_import.monai_import_facts()["optional_packages_hidden"]}))
"""


def _printed(code: str) -> list:
    """The lines ``code`` printed on stdout in a fresh interpreter (which must exit 0)."""
    out = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()


def _run(code: str) -> dict:
    """The JSON object on the last line ``code`` printed in a fresh interpreter."""
    return json.loads(_printed(code)[-1])


@pytest.fixture(scope="module")
def normal_import():
    """One fresh interpreter that imports MONAI the library's normal way (nothing hidden): ``{"callers_state":
    the first U-Net's effect on the caller (below), "forward": _FORWARD's result}``. The second build runs in
    the same interpreter: it is seeded, and MONAI imports once either way (two interpreters cost 6-8 s more)."""
    callers_state, forward = (json.loads(line) for line in
                             _printed(_CALLERS_STATE_AROUND_THE_FIRST_UNET + _FORWARD.format(hide=False)))
    return {"callers_state": callers_state, "forward": forward}


def test_hidden_import_gives_the_same_unet_and_unhides_the_packages(normal_import):
    lean = _run(_FORWARD.format(hide=True))
    full = normal_import["forward"]
    assert lean["facts"]["optional_packages_hidden"] is True and full["facts"]["optional_packages_hidden"] is False
    assert lean["hidden_loaded"] == [] and lean["blocked_left"] == []  # not loaded by MONAI, and not left blocked
    assert lean["values"] == pytest.approx(full["values"], abs=1e-6)
    assert lean["sum"] == pytest.approx(full["sum"], abs=1e-4)


def test_building_a_unet_leaves_the_callers_warnings_and_environment_as_they_were(normal_import):
    """The first U-Net imports MONAI, whose __init__ replaced warnings.showwarning, filtered the py.warnings logger
    and set CUBLAS_WORKSPACE_CONFIG in os.environ: a notebook, training script or Slicer that imported the library
    had them changed for the rest of the process (and its child processes). One interpreter (MONAI imports once):
    the library's import path (a segment-only process hides packages around the same import)."""
    assert normal_import["callers_state"] == {"showwarning": True, "filters": True, "cublas": None, "kept": "1",
                                              "monai": False}


def test_a_monai_that_needs_a_hidden_module_is_imported_normally():
    code = """
import json, sys
from LiverTumorSegLib.models.monai_import import import_monai_hiding
# hiding one of MONAI's own modules makes its import fail, as a MONAI needing a hidden package would
ok = import_monai_hiding(["monai.networks.nets.unet"])
from monai.networks.nets import UNet
print(json.dumps({"hidden_worked": ok, "unet": UNet.__module__,
                  "blocked_left": [n for n, m in sys.modules.items() if m is None and n.startswith("monai")]}))
"""
    result = _run(code)
    assert result == {"hidden_worked": False, "unet": "monai.networks.nets.unet", "blocked_left": []}


def test_the_segment_command_hides_them(tmp_path):
    """The CLI (and so the Slicer module's child process) runs with the packages hidden while MONAI imports. A tiny
    U-Net package (MONAI's UNet, as the bundled default) on a small phantom CT: the hiding is the command's, whatever
    the model and CT (the bundled model on the sample CT took 10 s more)."""
    from inference_helpers import corner_phantom, tiny_unet_package

    from LiverTumorSegLib.io import write_volume

    package = tiny_unet_package(tmp_path).path
    ct = write_volume(tmp_path / "ct.nii.gz", corner_phantom().ct)
    code = f"""
import json, sys
from LiverTumorSegLib.cli import main
code = main(["segment", {str(ct)!r}, "--model", {str(package)!r}, "-o", {str(tmp_path / 'seg.nii.gz')!r},
             "--report", {str(tmp_path / 'r.json')!r}, "--no-progress", "--device", "cpu"])
print(json.dumps({{"code": code, "signal_loaded": sys.modules.get("scipy.signal") is not None}}))
"""
    result = _run(code)
    report = json.loads((tmp_path / "r.json").read_text())
    assert result == {"code": 0, "signal_loaded": False}
    assert report["model_load_s"]["monai_optional_packages_hidden"] is True
    assert report["model_load_s"]["import_monai"] > 0.0


def test_two_threads_importing_monai_at_once_both_get_the_unet(tmp_path):
    """A second Segmenter loading while the first one's background load still imported MONAI (the in-process
    tests did this: a segment refused at the read, then the next one) met a half-imported MONAI: a deadlock
    error in monai.apps or 'cannot import name VQVAE from partially initialized module'. Fresh process: MONAI
    is not imported yet."""
    script = textwrap.dedent("""
        import sys, threading, time
        from LiverTumorSegLib.models import monai_import
        monai_import.hide_optional_packages_while_importing_monai(True)
        errors = []
        def load():
            try:
                monai_import.monai_unet_class()
            except Exception as exc:
                errors.append(repr(exc))
        threads = [threading.Thread(target=load) for _ in range(2)]
        threads[0].start()
        time.sleep(0.2)
        threads[1].start()
        for t in threads:
            t.join()
        print(errors)
        sys.exit(1 if errors else 0)
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, timeout=240, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_refused_input_returns_after_the_background_load_so_no_import_stays_hidden(tmp_path):
    """segment on a NaN CT: the read's error came back while the model load (with plotting packages hidden
    while MONAI imported) ran on, so the caller's next `import matplotlib.pyplot` in that window failed ('this
    command needs matplotlib, which is not installed'); in-process tests ran into it."""
    import numpy as np

    from LiverTumorSegLib.io import write_volume
    from LiverTumorSegLib.phantom import make_phantom
    from LiverTumorSegLib.volume import CTVolume

    phantom = make_phantom((6, 32, 32))
    array = phantom.ct.array.astype(np.float32)
    array[:3] = np.nan
    write_volume(tmp_path / "nan.nii.gz", CTVolume(array, phantom.ct.geometry))
    code = f"""
import json, sys
from LiverTumorSegLib.cli import main
from LiverTumorSegLib.models import monai_import
code = main(["segment", {str(tmp_path / 'nan.nii.gz')!r}, "-o", {str(tmp_path / 'seg.nii.gz')!r}, "--no-progress",
             "--device", "cpu"])
blocked = sorted(n for n in monai_import.OPTIONAL_PACKAGES_HIDDEN if n in sys.modules and sys.modules[n] is None)
import matplotlib.pyplot  # noqa: F401
print(json.dumps({{"code": code, "blocked": blocked, "monai": "monai.networks.nets" in sys.modules}}))
"""
    assert _run(code) == {"code": 2, "blocked": [], "monai": True}
