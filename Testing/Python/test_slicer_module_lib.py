"""The Slicer module's Qt-free helpers (LiverTumorSeg/LiverTumorSegModuleLib): dependency checks and installs with
fakes (nothing is ever installed) and the panel texts. The child process and the segmentation job are tested
in test_slicer_module_job.py."""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "LiverTumorSeg"))

from LiverTumorSegModuleLib import dependencies, panel_text  # noqa: E402

PRE = {"channels": [{"kind": "hist_scaled"}, {"kind": "window", "preset": "liver", "level": 60.0, "width": 200.0},
                    {"kind": "window", "level": 0.0, "width": 2000.0}], "context_slices": 1}

# ---- dependencies (fakes: versions from a dict, nothing imported or installed) ----------------------------


class FakeEnvironment:
    """Installed distributions ``{name: version}``, monai's requirement strings, and the install actions."""

    def __init__(self, installed, monai_requires=("torch>=1.9", "numpy>=1.20")):
        self.installed = dict(installed)
        self.monai_requires = list(monai_requires)
        self.questions, self.pip_calls, self.torch_calls, self.constraints = [], [], [], []

    def version_of(self, name):
        return self.installed.get(name)

    def requires_of(self, name):
        return self.monai_requires if name == "monai" else []

    def find_spec(self, module):
        distribution = {r.module: r.distribution for r in dependencies.REQUIREMENTS}.get(module, module)
        return object() if distribution in self.installed else None

    def confirm(self, question, answer=True):
        self.questions.append(question)
        return answer

    def pip_install(self, args):
        self.pip_calls.append(list(args))
        constraint = args[args.index("-c") + 1]
        self.constraints.append(Path(constraint).read_text(encoding="utf-8"))
        for requirement in args[:args.index("-c")]:  # "install" what was asked, at a version that fits
            name = requirement.split(">")[0].split("<")[0].split("=")[0]
            self.installed[name] = {"monai": "1.4.0"}.get(name, "99.0")
            if name == "monai":
                self.monai_requires = ["torch>=1.9"]

    def install_torch(self, requirement):
        self.torch_calls.append(requirement)
        self.installed["torch"] = "2.3.1+cu121"
        return "torch-module"

    def ensure(self, install_torch="default", answer=True):
        return dependencies.ensure_requirements(
            lambda q: self.confirm(q, answer), self.pip_install,
            self.install_torch if install_torch == "default" else install_torch,
            version_of=self.version_of, requires_of=self.requires_of, find_spec=self.find_spec,
            installed=lambda: sorted(self.installed.items()) + SLICER_OWN)


SLICER_OWN = [("numpy", "1.26.4"), ("vtk", "9.2.20230607"), ("Pillow", "10.2.0")]
"""Distributions Slicer's Python ships: a pip install must not replace them."""


ALL_OK = {"torch": "2.3.1+cu121", "monai": "1.4.0", "safetensors": "0.4.3", "nibabel": "5.2.1", "scipy": "1.13.0",
          "SimpleITK": "2.3.1", "pyyaml": "6.0.1", "tqdm": "4.66.0"}


def test_installed_distributions_lists_this_pythons_packages_by_name_and_version():
    found = dict(dependencies.installed_distributions())
    import numpy
    assert found["numpy"] == numpy.__version__


def test_versions_compare_on_their_numeric_release():
    assert dependencies.version_tuple("2.1.2+cu118") == (2, 1, 2)
    assert dependencies.version_tuple("1.4.0rc1") == (1, 4, 0) and dependencies.version_tuple("") == ()
    assert dependencies.version_at_least("2.1", "2.1.0") and dependencies.version_at_least("2.10.0", "2.9")
    assert not dependencies.version_at_least("2.0.1+cpu", "2.1")
    assert dependencies.minimum_torch_of(["torch>=2.8.0", "numpy<3.0,>=1.24", 'torchvision; extra == "all"']) == "2.8.0"
    assert dependencies.minimum_torch_of(["torchio>=5; extra == \"all\"", "torch>=1.9,<3"]) == "1.9"
    assert dependencies.minimum_torch_of(["numpy"]) == ""


def test_check_reports_missing_too_old_and_a_monai_that_needs_a_newer_torch():
    env = FakeEnvironment(dict(ALL_OK, scipy="1.8.1", nibabel=None), monai_requires=["torch>=2.8.0"])
    del env.installed["nibabel"]
    statuses = {s.requirement.distribution: s for s in dependencies.check_requirements(
        version_of=env.version_of, requires_of=env.requires_of, find_spec=env.find_spec)}
    assert statuses["torch"].state == dependencies.OK
    assert statuses["nibabel"].state == dependencies.MISSING
    assert statuses["scipy"].state == dependencies.TOO_OLD and statuses["scipy"].version == "1.8.1"
    assert statuses["monai"].state == dependencies.INCOMPATIBLE
    assert "needs torch>=2.8.0, installed torch 2.3.1+cu121" in statuses["monai"].describe()
    ok = FakeEnvironment(ALL_OK)
    assert dependencies.problems(dependencies.check_requirements(
        version_of=ok.version_of, requires_of=ok.requires_of, find_spec=ok.find_spec)) == []


def test_install_pins_the_installed_torch_and_refits_monai():
    env = FakeEnvironment(dict(ALL_OK, monai="1.6.1", scipy="1.8.1"), monai_requires=["torch>=2.8.0"])
    fixed = env.ensure()
    assert {s.requirement.distribution for s in fixed} == {"monai", "scipy"}
    assert env.torch_calls == []  # torch is fine: never touched
    (args,) = env.pip_calls
    assert args[:2] == ["monai>=1.3,<1.6.1", "scipy>=1.9"] and args[2] == "-c"
    (constraints,) = env.constraints
    pins = constraints.splitlines()
    assert pins[0] == "torch==2.3.1+cu121"  # pip cannot replace torch ...
    assert {"numpy==1.26.4", "vtk==9.2.20230607", "Pillow==10.2.0", "nibabel==5.2.1"} <= set(pins)  # ... nor Slicer's
    assert not any(p.startswith(("monai==", "scipy==")) for p in pins)  # what is installed may change
    assert not os.path.exists(args[3])  # the constraints file is removed again
    assert "never replaced" in env.questions[0]


def test_missing_torch_goes_through_the_pytorch_extension_with_a_version_requirement():
    installed = dict(ALL_OK)
    del installed["torch"], installed["monai"]
    env = FakeEnvironment(installed)
    env.ensure()
    assert env.torch_calls == [">=2.1"]
    (args,) = env.pip_calls
    assert args[:1] == ["monai>=1.3"] and not any(a.startswith("torch") for a in args)
    assert env.constraints[0].splitlines()[0] == "torch==2.3.1+cu121"  # the torch PyTorchUtils just installed
    assert "numpy==1.26.4" in env.constraints[0].splitlines()
    assert "PyTorchUtils" in env.questions[0]
    # PyTorch Utils installs torch and its dependencies without this module's pins: the question promised that
    # 'your installed PyTorch and the packages Slicer already has ... are never replaced' for them too
    assert "packages this module installs" in env.questions[0]
    assert "PyTorch extension as it does" in env.questions[0] and "Your installed PyTorch" not in env.questions[0]


def test_the_question_says_how_much_is_downloaded_with_and_without_torch():
    """It said "several hundred MB" either way: a CUDA PyTorch is about 3 GB, the other packages about 10 MB."""
    without_torch = FakeEnvironment(dict(ALL_OK, monai=None, nibabel=None))
    del without_torch.installed["monai"], without_torch.installed["nibabel"]
    without_torch.ensure()
    assert "about 10 MB" in without_torch.questions[0] and "GB" not in without_torch.questions[0]
    with_torch = FakeEnvironment(dict(ALL_OK))
    del with_torch.installed["torch"]
    with_torch.ensure()
    assert "about 3 GB" in with_torch.questions[0] and "about 200 MB" in with_torch.questions[0]
    assert "hundred" not in without_torch.questions[0] + with_torch.questions[0]


def test_too_old_torch_is_reported_not_replaced():
    env = FakeEnvironment(dict(ALL_OK, torch="1.13.1"))
    with pytest.raises(dependencies.DependencyError, match="PyTorch 1.13.1 is too old.*PyTorch Utils"):
        env.ensure()
    assert env.questions == [] and env.pip_calls == [] and env.torch_calls == []


def test_too_old_torch_message_gives_a_way_the_pytorch_extension_has():
    """It said "Update it in the PyTorch Utils module (it keeps the CUDA build)": that module has no update. Its
    Install button only says "PyTorch X is already installed" while a torch is installed (PyTorchUtils.py
    onInstallTorch), its version field "has no effect if PyTorch is already installed" (PyTorchUtils.ui). The way
    that works: uninstall there, restart, and click Segment (which installs through the extension)."""
    env = FakeEnvironment(dict(ALL_OK, torch="1.13.1"))
    with pytest.raises(dependencies.DependencyError) as raised:
        env.ensure()
    message = str(raised.value)
    assert "Update it" not in message and "keeps the CUDA build" not in message
    assert "'Uninstall PyTorch'" in message and "'Restart the application'" in message  # the extension's buttons
    assert "click Segment, Update lesion table or Compare again" in message and "torch>=2.1" in message


def test_missing_pytorch_extension_is_said_before_asking_to_download():
    """The question promised "PyTorch is installed by the PyTorch extension" and a 3 GB download; after OK it said
    the extension is not installed. Now that is said first, and nothing is asked or installed."""
    installed = dict(ALL_OK)
    del installed["torch"], installed["monai"]
    env = FakeEnvironment(installed)
    with pytest.raises(dependencies.DependencyError, match="PyTorch extension is not installed.*Nothing was installed"):
        env.ensure(install_torch=None)
    assert env.questions == [] and env.pip_calls == [] and env.torch_calls == []


def test_declined_or_impossible_installs_install_nothing():
    installed = dict(ALL_OK)
    del installed["torch"]
    env = FakeEnvironment(installed)
    with pytest.raises(dependencies.DependencyDeclinedError, match="Nothing was installed"):
        env.ensure(answer=False)
    with pytest.raises(dependencies.DependencyError, match="'PyTorch' extension"):
        env.ensure(install_torch=None)
    with pytest.raises(dependencies.DependencyError, match="PyTorch was not installed"):
        env.ensure(install_torch=lambda requirement: None)
    assert env.pip_calls == []


def test_still_wrong_after_installing_is_an_error():
    env = FakeEnvironment(dict(ALL_OK, scipy="1.8.1"))
    env.pip_install = lambda args: env.pip_calls.append(args)  # pip "succeeds" but changes nothing
    with pytest.raises(dependencies.DependencyError, match="still not right: scipy>=1.9"):
        env.ensure()


@pytest.mark.parametrize("missing", [("scipy",), ("torch", "monai")])
def test_the_check_after_installing_sees_fresh_folder_listings(monkeypatch, missing):
    """The import system's finders cache each folder's listing; one read by the first check, before the install,
    may not list a package just installed, and find_spec would still call it missing. The caches are invalidated
    after each install, before the next check."""
    import importlib

    installed = {name: version for name, version in ALL_OK.items() if name not in missing}
    env = FakeEnvironment(installed)
    events = []
    pip_install, install_torch, find_spec = env.pip_install, env.install_torch, env.find_spec
    env.pip_install = lambda args: (events.append("pip install"), pip_install(args))
    env.install_torch = lambda requirement: (events.append("install torch"), install_torch(requirement))[1]
    env.find_spec = lambda module: (events.append("find_spec"), find_spec(module))[1]
    monkeypatch.setattr(importlib, "invalidate_caches", lambda: events.append("invalidate caches"))
    env.ensure()
    installs = [i for i, event in enumerate(events) if event in ("pip install", "install torch")]
    assert len(installs) == len(missing) and installs
    for i in installs:  # each install is followed by the invalidation before anything is looked up again
        assert events[i + 1] == "invalidate caches"
    assert events[-1] == "find_spec"  # the final check ran after it


def test_the_documentation_names_the_versions_the_module_checks():
    """docs/slicer.md said nibabel >= 5.0 while the module requires 5.2 (5.0 and 5.1 use np.sctypes, which numpy 2
    removed)."""
    import re

    text = (Path(__file__).resolve().parents[2] / "docs" / "slicer.md").read_text(encoding="utf-8")
    section = text.split("## Dependencies", 1)[1].split("\n## ", 1)[0]
    listed = section.split("without importing anything:", 1)[1].split("and that the installed monai", 1)[0]
    documented = dict(re.findall(r"([A-Za-z][\w-]*) >= ([\d.]+)", listed))
    assert documented == {r.distribution: r.minimum for r in dependencies.REQUIREMENTS}
    assert f'torchVersionRequirement=">={dependencies.TORCH.minimum}"' in section
    monai = next(r for r in dependencies.REQUIREMENTS if r.distribution == "monai")
    assert f"`{monai.pip},<installed`" in section


def test_nothing_to_do_asks_nothing():
    env = FakeEnvironment(ALL_OK)
    assert env.ensure(install_torch=None) == [] and env.questions == [] and env.pip_calls == []


def test_device_text_before_and_after_a_run():
    assert "Auto uses the GPU" in panel_text.device_text()
    assert panel_text.device_text("cuda:0 (NVIDIA H100)").startswith("Last run used: cuda:0 (NVIDIA H100)")


# ---- panel texts ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell, number", [("3", 3), ("3.0", 3), (" 12 ", 12), (7, 7), ("inf", None), ("-inf", None),
                                          ("nan", None), ("3.5", None), ("", None), ("three", None), (None, None),
                                          ("1e400", None)])
def test_a_lesion_cell_gives_its_lesion_number_or_none(cell, number):
    """The lesion table's selection slot takes the Lesion cell's number through this: 'inf' (a cell edited by hand or
    a script) raised OverflowError there, which the slot did not catch."""
    assert panel_text.lesion_number_of_cell(cell) == number


def test_describe_preprocessing_names_channels_context_and_resampling():
    assert panel_text.describe_preprocessing({
        "channels": [{"kind": "window", "level": 40.0, "width": 400.0}, {"kind": "window", "preset": "liver"},
                     {"kind": "zscore", "mask": "body"}, {"kind": "hist_scaled"}],
        "context_slices": 2, "context_max_mm": 5.0, "target_size": [256, 192], "equalize": "clahe"}) == (
        "window L40/W400 HU, window liver, z-score, histogram-scaled; 2.5D context +/-2 slice(s) at most 5 mm from the "
        "centre; 256x192 pixels; clahe equalization")
    assert panel_text.describe_preprocessing({"channels": [{"kind": "zscore"}], "target_spacing_mm": 0.8}) == \
        "z-score; single slices; 0.8 mm pixels"
    assert panel_text.describe_preprocessing({}) == "unknown"


@pytest.mark.parametrize("preprocessing, reason", [
    ({"channels": [{"kind": "window", "level": 40}]}, "channels[0]: A window needs 'level' and 'width' (HU)"),
    ({"channels": [{"kind": "window", "level": 40, "width": "400"}]}, "channels[0] width must be a number, got '400'"),
    ({"channels": [{"kind": "zscore"}], "target_size": [1, 2, 3]}, "target_size must be [H, W] in pixels"),
    ({"channels": [{"kind": "zscore"}], "context_slices": "two"}, "context_slices must be an integer >= 0"),
], ids=["window without width", "width as text", "three target sizes", "context as text"])
def test_describe_preprocessing_of_a_damaged_package_says_why_instead_of_raising(preprocessing, reason):
    """A package's header is read without checking its preprocessing, so an edited one (a window without its width)
    reached the panel, whose model-changed slot raised 'Unknown format code g' and left the previous model's
    preprocessing line on show. It now says the library's reason and what to do."""
    text = panel_text.describe_preprocessing(preprocessing)
    assert text.startswith("cannot be read: " + reason), text
    assert text.endswith("The model file is damaged or was edited; Segment will refuse it. Add the model again from "
                         "its original file.")


def test_describe_model_shows_description_training_data_and_dice():
    text = panel_text.describe_model({
        "description": "2.5D U-Net", "architecture": {"name": "unet2d", "in_channels": 9},
        "training": {"data": "LiTS 131 CTs"},
        "validation": {"dice_liver": 0.9512, "dice_tumor": 0.61, "loss": 0.2, "per_case": {"dice_mean": 0.5}}})
    assert text.splitlines() == ["2.5D U-Net", "Network: unet2d (9 input channels)", "Training data: LiTS 131 CTs",
                                 "Validation: dice liver 0.951; dice tumor 0.610; per case dice mean 0.500"]
    assert panel_text.describe_model({"error": "bad sha"}) == "This model cannot be used: bad sha"
    assert panel_text.describe_model({}) == "Validation: no Dice reported"
    # the default package's tumor Dice is null (no real tumor labels): said, not left out
    assert panel_text.describe_model({"validation": {"dice_liver_mean": 0.739, "dice_tumor": None}}) == \
        "Validation: dice liver mean 0.739; dice tumor not measured"
    # a training run's whole-volume tumor Dice without any reference tumor says only whether tumor was predicted
    # (1.0 none, 0.0 some): it read 'whole volume tumor dice 1.000'
    whole = {"liver_dice": 0.9, "tumor_dice": 1.0, "raw_network": {"liver_dice": 0.8, "tumor_dice": 0.0},
             "cases": [{"case": "b", "reference_has_tumor": False}]}
    assert panel_text.validation_dice({"tumor_dice": 0.2, "whole_volume": whole}) == [
        "tumor dice 0.200", "whole volume liver dice 0.900", "whole volume raw network liver dice 0.800",
        "whole volume raw network tumor dice not measured (no validation case has a reference tumor)",
        "whole volume tumor dice not measured (no validation case has a reference tumor)"]
    whole["cases"].append({"case": "c", "reference_has_tumor": True})
    assert "whole volume tumor dice 1.000" in panel_text.validation_dice({"whole_volume": whole})


def test_describe_gpu_and_preprocessing_and_summary():
    gib = 1024 ** 3
    assert panel_text.describe_gpu({"name": "NVIDIA H100", "total_bytes": 80 * gib, "free_bytes": 79.5 * gib}) == \
        "GPU: NVIDIA H100, 80.0 GiB memory (79.5 GiB free)"
    assert panel_text.describe_gpu({}).startswith("No CUDA GPU")
    assert panel_text.describe_preprocessing(dict(PRE, target_spacing_mm=1.5)) == (
        "histogram-scaled, window L60/W200 HU, window L0/W2000 HU; 2.5D context +/-1 slice(s); 1.5 mm pixels")
    for bounds, text in (({"context_min_mm": 1.0}, "at least 1 mm"), ({"context_max_mm": 3.0}, "at most 3 mm"),
                         ({"context_min_mm": 1.0, "context_max_mm": 3.0}, "1-3 mm")):
        assert panel_text.describe_preprocessing(dict(PRE, target_spacing_mm=1.5, **bounds)) == (
            f"histogram-scaled, window L60/W200 HU, window L0/W2000 HU; 2.5D context +/-1 slice(s) {text} from the "
            f"centre; 1.5 mm pixels")
    assert panel_text.summary_text({"liver_volume_ml": 1520.04, "tumor_volume_ml": 12.5,
                                    "tumor_burden_percent": 0.8224, "lesions": [{}, {}]}) == \
        "Liver 1520.0 mL (tumors included), tumor 12.50 mL (burden 0.82 %), 2 lesions"
    assert panel_text.summary_text({"liver_volume_ml": 900.0, "tumor_volume_ml": 0.04, "tumor_burden_percent": 0.0,
                                    "lesions": [{}], "recist": {"sum_of_diameters_mm": 46.54}}) == \
        "Liver 900.0 mL (tumors included), tumor 0.04 mL (burden 0.00 %), 1 lesion, RECIST sum of diameters 46.5 mm"
    assert panel_text.summary_text({}) == "No result yet."
    # a one-voxel lesion (0.0005 mL at 0.7 x 0.7 x 1 mm) in a 1500 mL liver: never "tumor 0.00 mL (burden 0.00 %)"
    # beside "1 lesion"; a rounding -0.0 reads 0.00
    assert panel_text.summary_text({"liver_volume_ml": 1500.0, "tumor_volume_ml": 0.00049,
                                    "tumor_burden_percent": 3.3e-5, "lesions": [{}]}) == \
        "Liver 1500.0 mL (tumors included), tumor <0.01 mL (burden <0.01 %), 1 lesion"
    assert panel_text.summary_text({"liver_volume_ml": 1500.0, "tumor_volume_ml": 0.006,
                                    "tumor_burden_percent": -1e-9, "lesions": [{}]}) == \
        "Liver 1500.0 mL (tumors included), tumor 0.01 mL (burden 0.00 %), 1 lesion"
    report = {"liver_volume_ml": 1520.04, "tumor_volume_ml": 0.0, "tumor_burden_percent": 0.0, "lesions": [],
              "warnings": ["'/tmp/LiverTumorSeg-x/ct.nrrd' is stored on a grid tilted 30 degrees from the patient "
                           "axes", "liver volume 6100 mL is implausible (/tmp/LiverTumorSeg-x/ct.nrrd)"]}
    warnings = panel_text.result_warnings(report, "/tmp/LiverTumorSeg-x/ct.nrrd", "CT chest")
    assert warnings == ["Volume 'CT chest' is stored on a grid tilted 30 degrees from the patient axes",
                        "liver volume 6100 mL is implausible (CT chest)"]
    assert panel_text.summary_text(report, warnings).splitlines() == [
        "Liver 1520.0 mL (tumors included), tumor 0.00 mL (burden 0.00 %), 0 lesions", "Warning: " + warnings[0],
        "Warning: " + warnings[1]]
    assert panel_text.result_warnings({"warnings": None}) == []
    # the panel's Device "GPU" on a machine without one (the child's words, from a real run)
    assert panel_text.result_warnings({"warnings": [
        "A GPU (CUDA or Apple MPS) was requested (--device gpu) but this PyTorch (torch 2.13.0+cpu) sees none; "
        "running on the CPU instead (slower)."]}) == [
        'A GPU (CUDA or Apple MPS) was requested (Device "GPU") but this PyTorch (torch 2.13.0+cpu) sees none; '
        "running on the CPU instead (slower)."]
    # Windows: Qt's temporary path has forward slashes, the child prints the path with backslashes
    windows = {"warnings": ["'C:\\Users\\jo\\AppData\\Local\\Temp\\Slicer\\LiverTumorSeg-x\\ct.nrrd' has thick "
                            "slices"]}
    assert panel_text.result_warnings(windows, "C:/Users/jo/AppData/Local/Temp/Slicer\\LiverTumorSeg-x\\ct.nrrd",
                                      "CT") == ["Volume 'CT' has thick slices"]
    assert panel_text.done_text(12.4) == "Done in 12 s."
    assert panel_text.done_text(12.4, warnings) == "Done in 12 s, with 2 warnings (below)."
    assert panel_text.done_text(3.0, warnings[:1]) == "Done in 3 s, with 1 warning (below)."


def test_the_module_log_says_how_many_air_slices_the_network_did_not_run_on():
    """The report's air_slices_skipped reached no one in Slicer: the log now names the slices left out as air."""
    assert panel_text.air_slices_text({"air_slices_skipped": 4}) == (
        "LiverTumorSeg: the network was not run on 4 slices whose whole input was air (below -800 HU); they are "
        "background.")
    assert "on 1 slice whose" in panel_text.air_slices_text({"air_slices_skipped": 1})
    for report in ({"air_slices_skipped": 0}, {"air_slices_skipped": None}, {}, None, {"air_slices_skipped": True}):
        assert panel_text.air_slices_text(report) == ""


def test_model_choices_mark_default_and_unusable():
    items = panel_text.model_choices([
        {"name": "default", "path": "/a/default.safetensors", "source": "bundled", "default": True, "error": None},
        {"name": "broken", "path": "/b/broken.safetensors", "source": "user", "error": "truncated"}])
    assert items == [{"text": "default (bundled) - default", "path": "/a/default.safetensors", "default": True,
                      "usable": True, "error": None, "bundled_default_file": True},
                     {"text": "broken (user) - unusable", "path": "/b/broken.safetensors", "default": False,
                      "usable": False, "error": "truncated", "bundled_default_file": False}]  # the reason: model text
    # a scene's model saved under another folder: the one installed file of that name
    assert panel_text.installed_by_file_name("/home/x/models/default.safetensors", items) == "/a/default.safetensors"
    assert panel_text.installed_by_file_name("/home/x/models/broken.safetensors", items) == ""  # not usable
    assert panel_text.installed_by_file_name("C:\\Users\\x\\default.safetensors", items) == "/a/default.safetensors"


def test_model_choices_name_the_file_of_packages_that_share_a_name():
    """Two user packages named alike (one float32, one float16) were two identical items, 'Leber (user)', and neither
    item nor description said which file each was (the package audit)."""
    items = panel_text.model_choices([
        {"name": "Leber", "path": "/u/leber32.safetensors", "source": "user", "error": None},
        {"name": "Leber", "path": "C:\\u\\leber16.safetensors", "source": "user", "error": None},
        {"name": "Leber", "path": "/b/leber.safetensors", "source": "bundled", "error": None},
        {"name": "unet", "path": "/u/unet.safetensors", "source": "user", "error": "truncated"}])
    assert [item["text"] for item in items] == ["Leber (user: leber32.safetensors)", "Leber (user: leber16.safetensors)",
                                                "Leber (bundled)", "unet (user) - unusable"]


def test_a_new_scene_gets_the_default_model_not_the_first_in_the_list():
    """The list is sorted by file name: its first item, which a new scene got, was alexnet_fcn_v2 (robustness
    tumor Dice 0.34 against the default's 0.74)."""
    from LiverTumorSegLib.package import list_installed_models

    items = panel_text.model_choices(list_installed_models())
    assert items[0]["path"].endswith("alexnet_fcn_v2.safetensors")  # the bundled packages, sorted by name
    assert panel_text.default_model_path(items).endswith("default.safetensors")
    assert panel_text.default_model_path([{"path": "/x.safetensors", "default": False}]) == "/x.safetensors"
    assert panel_text.default_model_path([]) == ""


def test_without_a_default_file_a_new_scene_gets_the_first_usable_package_not_a_broken_one():
    items = panel_text.model_choices([
        {"name": "a_broken", "path": "/b/a_broken.safetensors", "source": "user", "error": "truncated"},
        {"name": "unet", "path": "/a/unet.safetensors", "source": "bundled", "error": None}])
    assert panel_text.default_model_path(items) == "/a/unet.safetensors"
    assert panel_text.default_model_path(items[:1]) == ""
    assert panel_text.unusable_default_text(items) == ""


def test_a_damaged_bundled_default_selects_nothing_and_says_why():
    """A damaged default.safetensors made a new scene select the first usable package (alexnet_fcn_v2) without a
    word, and a scene whose model was not installed here was told 'the default model is selected', while segment
    refuses the damaged default (the package audit). Nothing is selected now, and the panel says why."""
    items = panel_text.model_choices([
        {"name": "alexnet_fcn_v2", "path": "/a/alexnet_fcn_v2.safetensors", "source": "bundled", "error": None},
        {"name": "default", "path": "/a/default.safetensors", "source": "bundled", "default": False,
         "error": "its metadata failed its integrity check"},
        {"name": "unet", "path": "/a/unet.safetensors", "source": "bundled", "error": None}])
    assert panel_text.default_model_path(items) == ""
    text = panel_text.unusable_default_text(items)
    assert "its metadata failed its integrity check" in text and "Restore Resources/Models/default.safetensors" in text
    user_named_default = panel_text.model_choices([  # a user's file named default.safetensors is not the bundled one
        {"name": "default", "path": "/u/default.safetensors", "source": "user", "error": "truncated"},
        {"name": "unet", "path": "/a/unet.safetensors", "source": "bundled", "error": None}])
    assert panel_text.default_model_path(user_named_default) == "/a/unet.safetensors"


def test_training_data_text_prefers_description_and_hides_build_machine_paths():
    assert panel_text.training_data_text({"data": "/root/out/cases.csv", "cases": ["a", "b", "c"]}) == \
        "3 training case(s)"
    assert panel_text.training_data_text({"data": "C:\\\\data\\\\x", "num_train_cases": 131}) == "131 training case(s)"
    assert panel_text.training_data_text({"data": "/root/out/cases.csv",
                                          "data_description": "3 real CTs"}) == "3 real CTs"
    assert panel_text.training_data_text({"data": "/x.csv"}) == ""
    assert panel_text.training_data_text({"data": "LiTS liver/tumor CTs (131)"}) == "LiTS liver/tumor CTs (131)"
    text = panel_text.describe_model({"validation": {"dice_liver_mean": 0.7329,
                                                     "method": "leave-one-patient-out over 3 patients: details"}})
    assert text == "Validation (leave-one-patient-out over 3 patients): dice liver mean 0.733"


def test_describe_model_of_the_bundled_package_shows_its_training_data_not_a_path():
    from bundled_model_helpers import bundled_default_model_or_skip
    from LiverTumorSegLib.package import read_package_metadata
    metadata = read_package_metadata(bundled_default_model_or_skip())  # a damaged package fails, not skips
    text = panel_text.describe_model(metadata)
    assert "Training data: " in text and "/root/" not in text and "dice liver" in text


def test_panel_code_works_without_torch_and_the_other_packages(tmp_path):
    """A fresh Slicer has none of torch, monai, safetensors, ...: the module's imports and the panel's model list
    must work anyway (so the panel opens and the self-test can skip instead of failing), and nothing the panel
    runs imports torch."""
    import subprocess
    blocked = sorted(r.module for r in dependencies.REQUIREMENTS)
    script = tmp_path / "no_packages.py"
    script.write_text(f"""
import importlib.abc, sys
BLOCKED = set({blocked!r})
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
sys.path.insert(0, {str(Path(__file__).resolve().parents[2] / "LiverTumorSeg")!r})
from LiverTumorSegLib import mrml
from LiverTumorSegModuleLib import childprocess, dependencies, job, panel_text
from LiverTumorSegLib.package import list_installed_models, read_package_metadata
models = list_installed_models()
texts = [panel_text.describe_model(read_package_metadata(m["path"])) for m in models if not m.get("error")]
statuses = dependencies.check_requirements(find_spec=lambda name: None if name in BLOCKED else object())
print(len(models), len(texts), dependencies.missing_summary(statuses))
print(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
""")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         cwd=str(Path(__file__).resolve().parents[2]))
    assert out.returncode == 0, out.stderr
    counts, imported = out.stdout.strip().splitlines()
    assert imported == "[]"
    assert "torch>=2.1 (not installed)" in counts and "monai>=1.3 (not installed)" in counts


def test_self_test_skips_or_offers_install_but_never_fails_for_missing_packages():
    installed = dict(ALL_OK)
    del installed["monai"]
    env = FakeEnvironment(installed)
    statuses = dependencies.check_requirements(version_of=env.version_of, requires_of=env.requires_of,
                                               find_spec=env.find_spec)
    calls = []
    reason = dependencies.self_test_skip_reason(statuses, testing_mode=True, install=lambda: calls.append(1))
    assert reason.startswith("LiverTumorSeg self-test skipped: Python packages not ready (monai>=1.3 (not installed))")
    assert calls == []  # ctest never installs
    assert dependencies.self_test_skip_reason(statuses, testing_mode=False, install=lambda: calls.append(1)) == ""
    assert calls == [1]  # a person running the test is offered the install

    def declined():
        raise dependencies.DependencyDeclinedError(dependencies.DECLINED_MESSAGE)
    reason = dependencies.self_test_skip_reason(statuses, testing_mode=False, install=declined)
    assert "self-test skipped" in reason and "Nothing was installed" in reason
    ok = FakeEnvironment(ALL_OK)
    assert dependencies.self_test_skip_reason(dependencies.check_requirements(
        version_of=ok.version_of, requires_of=ok.requires_of, find_spec=ok.find_spec), True, declined) == ""


def test_a_loaded_scenes_table_gives_the_summary_its_run_gave():
    """After a saved scene was loaded the panel said "No result yet." beside a table full of lesions; the
    table's attributes (as mrml.create_lesion_table_node writes them) now give the same summary line."""
    slicer = pytest.importorskip("slicer")  # noqa: F841 - real MRML for the table node
    from LiverTumorSegLib import mrml

    scene = mrml.make_headless_scene()
    report = {"liver_volume_ml": 900.0, "tumor_volume_ml": 0.04, "tumor_burden_percent": 0.0044,
              "lesions": [{"id": 1, "volume_ml": 0.04}], "recist": {"sum_of_diameters_mm": 46.54}}
    table = mrml.create_lesion_table_node(scene, report)
    assert panel_text.table_summary_text(table) == panel_text.summary_text(report) == (
        "Liver 900.0 mL (tumors included), tumor 0.04 mL (burden <0.01 %), 1 lesion, RECIST sum of diameters 46.5 mm")
    assert panel_text.table_summary_text(None) == "No result yet."
    table.SetAttribute("LiverTumorSeg.tumor_volume_ml", "")  # edited by hand: 'unknown', not 'nan'
    assert panel_text.table_summary_text(table).startswith(
        "Liver 900.0 mL (tumors included), tumor unknown mL (burden <0.01 %)")



def test_a_lesion_tables_warnings_survive_a_saved_scene_and_show_again(tmp_path):
    """The warnings of the run that filled a lesion table (a liver-only model, water-density lesions) were shown only
    under that run's summary: after the scene was saved and loaded again the panel gave the table's numbers without
    them. They are kept in a table attribute (written to the .mrml) and the summary shows them again."""
    pytest.importorskip("slicer")
    from LiverTumorSegLib import mrml

    scene = mrml.make_headless_scene()
    warnings = ["This model segments the liver only: the 'Liver tumor' segment is empty; do not read it as 'no "
                "tumor'.", 'Lesion 2 has the CT values of water (mean 8.0 HU; 50% of voxels 0..20 HU): a cyst?',
                "50 \u00b5m; a:b \"quoted\" %41 & <tag>"]
    report = {"liver_volume_ml": 900.0, "tumor_volume_ml": 2.0, "tumor_burden_percent": 0.22,
              "lesions": [{"id": 1, "volume_ml": 2.0}], "warnings": warnings}
    table = mrml.create_lesion_table_node(scene, report)
    shown = panel_text.table_summary_text(table)
    assert shown == panel_text.summary_text(report, warnings) and shown.count("\nWarning: ") == 3
    table.AddDefaultStorageNode()
    table.GetStorageNode().SetFileName(str(tmp_path / "lesions.tsv"))
    assert table.GetStorageNode().WriteData(table)
    scene.SetURL(str(tmp_path / "scene.mrml"))
    assert scene.Commit()
    reloaded = mrml.make_headless_scene()
    reloaded.SetURL(str(tmp_path / "scene.mrml"))
    reloaded.Import()
    loaded = reloaded.GetFirstNodeByClass("vtkMRMLTableNode")
    assert mrml.lesion_table_warnings(loaded) == warnings
    assert panel_text.table_summary_text(loaded) == shown
    # refilled by a run without warnings: the earlier run's are gone; a table without any (an older scene's) or with
    # an attribute edited by hand has none
    mrml.create_lesion_table_node(scene, dict(report, warnings=[]), table_node=table)
    assert mrml.lesion_table_warnings(table) == [] and "Warning" not in panel_text.table_summary_text(table)
    for text in (None, "", "not JSON", '{"a": 1}'):
        table.SetAttribute(mrml.LESION_TABLE_WARNINGS_ATTRIBUTE, text)
        assert mrml.lesion_table_warnings(table) == []

def test_the_summarys_liver_volume_says_it_holds_the_tumors_the_liver_segment_does_not():
    """The report's liver volume is the whole liver (label >= 1) and the segment "Liver" is the liver without its
    tumors: the summary read "Liver 709.2 mL" beside a "Liver" segment of 690.8 mL on a real CT with 18.4 mL of tumor,
    two numbers under one name."""
    pytest.importorskip("slicer")
    import numpy as np

    from LiverTumorSegLib import mrml
    from LiverTumorSegLib.inference.lesion_report import lesion_report
    from LiverTumorSegLib.volume import ImageGeometry

    geometry = ImageGeometry(spacing=(2.0, 2.0, 2.5))
    labels = np.zeros((6, 12, 12), np.uint8)
    labels[1:5, 1:11, 1:11] = 1
    labels[2:4, 3:6, 3:6] = 2
    report = lesion_report(labels, geometry)
    segmentation = mrml.labels_to_segmentation_node(mrml.make_headless_scene(), labels, geometry)
    liver_segment_ml = mrml.segment_mask(segmentation, mrml.LIVER_SEGMENT.segment_id, geometry,
                                         labels.shape).sum() * geometry.voxel_volume_ml
    assert report["liver_volume_ml"] == pytest.approx(4.0) and liver_segment_ml == pytest.approx(3.82)  # 400, 382 voxels
    assert panel_text.summary_text(report).startswith("Liver 4.0 mL (tumors included), tumor 0.18 mL (burden 4.50 %)")


def test_a_loaded_scenes_change_table_gives_the_response_and_sums_its_run_gave(tmp_path):
    """A saved scene reopens with its follow-up table; the compare section shows the response and the sums of
    diameters from the table's attributes, as the run's first lines gave them (the target ids are not kept), also
    after the scene went through a .mrml file."""
    pytest.importorskip("slicer")  # real MRML for the table node
    from LiverTumorSegLib import mrml
    from LiverTumorSegLib.followup import change_summary_lines

    change = {"response": "PR", "response_reason": "sum of diameters -40.0 %", "lesions": [],
              "sum_of_diameters": {"target_lesion_ids": [1, 2], "baseline_mm": 50.0, "followup_mm": 30.0,
                                   "change_mm": -20.0, "change_percent": -40.0},
              "alignment": {"method": "masks", "translation_lps_mm": [0.0, 0.0, 0.0], "liver_dice_after_alignment": None}}
    scene = mrml.make_headless_scene()
    table = mrml.create_change_table_node(scene, change)
    expected = "\n".join([change_summary_lines(change)[0],
                          "target lesions: sum of diameters 50.0 -> 30.0 mm (-40.0 %)"])
    assert panel_text.change_table_summary_text(table) == expected
    assert change_summary_lines(change)[1] == "target lesions [1, 2]: sum of diameters 50.0 -> 30.0 mm (-40.0 %)"
    scene.SetURL(str(tmp_path / "scene.mrml"))
    scene.Commit()
    reloaded = mrml.make_headless_scene()
    reloaded.SetURL(str(tmp_path / "scene.mrml"))
    reloaded.Import()
    loaded = reloaded.GetFirstNodeByClass("vtkMRMLTableNode")
    assert panel_text.change_table_summary_text(loaded) == expected
    unknown = dict(change, response="NE", response_reason="a target lies outside the follow-up scan",
                   sum_of_diameters=dict(change["sum_of_diameters"], followup_mm=None, change_mm=None,
                                         change_percent=None))
    mrml.create_change_table_node(scene, unknown, table_node=table)
    assert panel_text.change_table_summary_text(table).splitlines()[1] == (
        "target lesions: sum of diameters 50.0 -> unknown (a target lies outside the follow-up scan)")
    mrml.create_change_table_node(scene, change, table_node=table)
    table.SetAttribute("LiverTumorSeg.sum_of_diameters_change_percent", "")  # edited by hand: no percent (it raised)
    assert panel_text.change_table_summary_text(table).splitlines()[1] == "target lesions: sum of diameters 50.0 -> 30.0 mm"
    mrml.create_change_table_node(scene, dict(change, sum_of_diameters={"baseline_mm": None}), table_node=table)
    assert panel_text.change_table_summary_text(table) == change_summary_lines(change)[0]  # no target lesions
    assert panel_text.change_table_summary_text(None) == ""
    assert panel_text.change_table_summary_text(scene.AddNewNodeByClass("vtkMRMLTableNode")) == ""  # not ours


def test_qbytearray_bytes_takes_the_bytes_or_str_that_data_returns():
    """PythonQt's QByteArray.data() may give str; bytes(str) raised TypeError in every poll of the child."""
    from LiverTumorSegModuleLib.childprocess import qbytearray_bytes

    class Array:
        def __init__(self, raw):
            self.raw = raw

        def data(self):
            return self.raw

    assert qbytearray_bytes(Array(b'{"progress": 0.5}\n')) == b'{"progress": 0.5}\n'
    assert qbytearray_bytes(Array('{"progress": 0.5}\n')) == b'{"progress": 0.5}\n'
    assert qbytearray_bytes(Array(bytearray(b"\xc3\xa9"))).decode("utf-8") == "\u00e9"
    # a str of raw bytes (one latin-1 character per byte) and a str of decoded text give the same UTF-8 bytes
    assert qbytearray_bytes(Array(b"D\xc3\xa9j\xc3\xa0 \xe2\x86\x92".decode("latin-1"))) == "D\u00e9j\u00e0 \u2192".encode()
    assert qbytearray_bytes(Array("D\u00e9j\u00e0")) == "D\u00e9j\u00e0".encode()
    assert qbytearray_bytes(Array("\u2192 \u6587")) == "\u2192 \u6587".encode()


def test_the_air_steps_warning_names_no_flag_the_panel_lacks():
    """The air rule's warning ended 'run again with --keep-liver-in-air', a flag the panel has no control for."""
    from LiverTumorSegLib.inference.postprocess import postprocessing_warnings
    from LiverTumorSegLib.errors import cli_wording

    with cli_wording():  # the child runs the command line
        (warning,) = postprocessing_warnings({"liver_in_air_ml": 40.0, "tumor_in_air_ml": 0.0})
    (shown,) = panel_text.result_warnings({"warnings": [warning]})
    assert "--keep-liver-in-air" in warning and "run again with" not in shown
    assert "the panel has no control for this step" in shown


def test_memory_and_precision_advice_names_no_bare_flag_the_panel_lacks():
    """The segment child's out-of-memory error ended '--batch-size 1 lowers what the network needs' and its NaN error
    'Run it with --precision fp32': the panel showed both flags bare, with no batch size or precision control."""
    from types import SimpleNamespace

    import numpy as np

    from LiverTumorSegLib.errors import cli_wording, out_of_memory_error

    with cli_wording():  # the child runs the command line (segment --progress json)
        memory = str(out_of_memory_error(MemoryError("Unable to allocate 3.1 GiB"), batch_size_option=True))
    shown = panel_text.error_text(memory)
    assert "; --batch-size 1 lowers" in memory and "; --batch-size 1" not in shown
    assert "the command line's `livertumorseg segment --batch-size 1` (the panel has no control for it)" in shown
    torch_engine = pytest.importorskip("LiverTumorSegLib.inference.engine")
    with cli_wording(), pytest.raises(Exception) as raised:
        torch_engine.SliceInferenceEngine._raise_non_finite(SimpleNamespace(precision_used="bf16"), [3, 4],
                                                           np.array([2, 0]), 100)
    shown = panel_text.error_text(str(raised.value))
    assert "Run it with --precision fp32" in str(raised.value) and "Run it with --precision" not in shown
    assert "`livertumorseg segment --precision fp32` (the panel has no control for it)" in shown


def test_followup_advice_names_the_panels_checkbox_not_command_line_flags():
    """The comparison runs the command line in a child, so its advice named --baseline-ct / --alignment none, which
    the panel does not have (it always hands over both CTs and has one alignment checkbox)."""
    from LiverTumorSegLib.cli import cli_wording
    from LiverTumorSegLib.followup import _alignment_option, _ct_options

    with cli_wording():  # as the child words them
        no_liver = (f"Cannot align on the liver: the follow-up label map has no liver label (1), only tumor or "
                    f"nothing; give both CTs ({_ct_options()}) or {_alignment_option('none')}.")
        failed = f"Alignment ... failed (ITK ERROR); check that both scans show the same region, or use " \
                 f"{_alignment_option('none')}."
        doubtful = f"the livers overlap little ...; or try another alignment ({_alignment_option('ct|liver|none')})"
    for text in (no_liver, failed, doubtful):
        shown = panel_text.followup_text(text)
        assert "--" not in shown and '"Align on the CTs"' in shown, shown


def test_segment_button_is_off_with_the_reason_when_the_selected_volume_is_no_ct():
    """With this module's tumor probability map (which the CT selector lists) selected, Segment stayed enabled and
    failed only when clicked; it is now off and its tooltip says why. A running segmentation can always be
    cancelled, and a running measure excludes a segmentation."""
    reason = "'CT tumor probability' is a tumor probability map made by this module, not a CT; select the CT volume"
    assert panel_text.segment_button_state(False, True, False, reason) == (False, reason)
    assert panel_text.segment_button_state(False, True, False) == (True, panel_text.SEGMENT_TOOLTIP)
    # greyed out while the lesion table is updated or the packages installed: the tooltip says so (it said 'Segment
    # liver and tumors', and 'Select a CT volume and a model' with both selected)
    assert panel_text.segment_button_state(False, True, True) == (
        False, "Wait for the lesion table update to end (or cancel it)")
    assert panel_text.segment_button_state(False, False, False, installing=True) == (
        False, "Wait for the Python packages to be installed")
    assert panel_text.segment_button_state(False, False, False) == (False, "Select a CT volume and a model")
    assert panel_text.segment_button_state(True, True, False, reason) == (
        True, "Stop the running segmentation (the scene is not changed)")


def test_update_lesion_table_button_says_why_it_is_off_and_what_its_cancel_does():
    """The button was greyed out with its tooltip 'After editing ...: measure them again' whatever the reason (no
    segments, another CT's segmentation, a segmentation running), and kept it while it read Cancel. Enabled exactly
    when it was: while measuring (to cancel), else with a CT, this module's segments on it, no run, no install."""
    import itertools

    for measuring, running, has_input, has_segments, own_ct, installing in itertools.product((False, True), repeat=6):
        enabled, tip = panel_text.measure_button_state(measuring, running, has_input, has_segments, own_ct, installing)
        assert enabled == (measuring or (has_input and not installing and has_segments and own_ct and not running))
        assert tip
    assert panel_text.measure_button_state(True, False, True, True, True) == (
        True, "Stop updating the lesion table (the table stays as it was)")
    assert panel_text.measure_button_state(False, False, True, True, True) == (True, panel_text.MEASURE_TOOLTIP)
    assert "made on another CT" in panel_text.measure_button_state(False, False, True, True, False)[1]
    assert "Segment first" in panel_text.measure_button_state(False, False, True, False, True)[1]
    assert "segmentation to end" in panel_text.measure_button_state(False, True, True, True, True)[1]


def test_an_installed_package_with_a_version_pip_cannot_read_is_not_pinned():
    """pip 25.0 refuses a whole constraints file over one line like ``weirdpkg==1.0-custom`` (not PEP 440), so one
    such package in Slicer's Python would have stopped every install; it is left out of the pins instead."""
    env = FakeEnvironment(dict(ALL_OK, scipy="1.8.1"))
    env.installed["weirdpkg"] = "1.0-custom"
    env.installed["dicomweb-client"] = "0.59.1.post1+g12ab"
    env.ensure()
    pins = env.constraints[0].splitlines()
    assert "numpy==1.26.4" in pins and "dicomweb-client==0.59.1.post1+g12ab" in pins
    assert not any(p.startswith("weirdpkg") for p in pins)
    for version in ("2.3.1+cu121", "1.4.0rc1", "2.0.0.dev20230101", "1!2.0", "v1.0", "1.0-1", "0.9.post2"):
        assert dependencies.pinnable(version), version
    for version in ("1.0-custom", "unknown", "2.0 beta", ""):
        assert not dependencies.pinnable(version), version


OFFLINE_PIP_OUTPUT = [  # pip 23.0 on Python 3.9 with no server at the index address (run here, 27 Nov 2026)
    "Looking in indexes: http://127.0.0.1:9/simple",
    "WARNING: Retrying (Retry(total=0, connect=None, read=None, redirect=None, status=None)) after connection broken "
    "by 'NewConnectionError('<pip._vendor.urllib3.connection.HTTPConnection object at 0x7f06613d3d30>: Failed to "
    "establish a new connection: [Errno 111] Connection refused')': /simple/monai/",
    "ERROR: Could not find a version that satisfies the requirement monai>=1.3 (from versions: none)",
    "ERROR: No matching distribution found for monai>=1.3",
]


def slicer_pip_install(output_lines, calls, logged=False):
    """Stands in for ``slicer.util.pip_install`` of Slicer 5.2-5.10: takes a str (shlex-split) or a list (kept as
    is, ``type(requirements) == list``), anything else is a ValueError; each line pip prints is printed (5.8's log
    tags them [Stream]) or logged with logging.info (Slicer's 2020 util.py); a failed pip is a CalledProcessError
    that names only the command and exit status."""
    import logging
    import shlex
    import subprocess

    def pip_install(requirements):
        if type(requirements) == str:  # noqa: E721 - as Slicer checks it
            args = ["install", *shlex.split(requirements)]
        elif type(requirements) == list:  # noqa: E721
            args = ["install", *requirements]
        else:
            raise ValueError("pip_install requirement input must be string or list")
        calls.append(args)
        for line in output_lines:
            logging.getLogger().info(line) if logged else print(line)
        raise subprocess.CalledProcessError(1, ["PythonSlicer", "-m", "pip", *args])
    return pip_install


@pytest.mark.parametrize("logged", [False, True])
def test_a_failed_pip_install_says_pips_reason_not_slicers_command_line(caplog, logged):
    """Slicer's pip_install raises CalledProcessError("Command '[...PythonSlicer', '-m', 'pip', ...]' returned
    non-zero exit status 1"): shown as it was, the user learnt nothing of why. The message now quotes pip's ERROR
    lines, names the likely cause and where pip's whole output is."""
    import logging

    caplog.set_level(logging.INFO)
    env = FakeEnvironment(dict(ALL_OK, scipy="1.8.1"))
    calls = []
    env.pip_install = slicer_pip_install(OFFLINE_PIP_OUTPUT, calls, logged=logged)
    with pytest.raises(dependencies.DependencyError) as raised:
        env.ensure()
    message = str(raised.value)
    assert "exit status 1" in message and "Command '[" not in message
    assert "  ERROR: No matching distribution found for monai>=1.3" in message
    assert "internet connection" in message and "Python console" in message
    (args,) = calls  # the list reached pip whole: the constraints path stays one argument
    assert args[0] == "install" and args[-2] == "-c" and not os.path.exists(args[-1])


def slicer_5_11_pip_install(calls, cancel, install=lambda args: None):
    """Stands in for Slicer 5.11's ``slicer.packaging.pip_install(args, *, requirements=None, interactive=True)``
    (Base/Python/slicer/packaging/installer.py): with ``interactive`` it asks "Install dependencies?" itself and
    raises ``InstallationAbortedError(command, dependee)`` on Cancel; ``interactive=False`` installs without asking."""
    import shlex

    class InstallationAbortedError(Exception):
        def __init__(self, command, dependee):
            super().__init__(command, dependee)

    def pip_install(args=None, *, requirements=None, interactive=True):
        calls.append((list(args), interactive))
        if interactive and cancel:
            raise InstallationAbortedError(args, shlex.join(args))
        install(args)
    return pip_install


@pytest.mark.parametrize("wrapped", [False, True])
def test_slicer_5_11s_installer_does_not_ask_again_and_its_cancel_is_a_decline(wrapped):
    """Slicer 5.11's installer asks its own question after the module's; a Cancel there raised
    InstallationAbortedError, which the panel showed as "not ready: (['monai>=1.3', '-c', '/tmp/...'], ...)". The
    module's wrapper (asked_once) installs without the second question, and maps that Cancel to the decline."""
    calls = []
    env = FakeEnvironment(dict(ALL_OK, scipy="1.8.1"))
    pip_install = slicer_5_11_pip_install(calls, cancel=True)
    if not wrapped:  # the call as the module made it
        with pytest.raises(Exception) as raised:
            dependencies.ensure_requirements(lambda q: True, pip_install, None, version_of=env.version_of,
                                             requires_of=env.requires_of, find_spec=env.find_spec,
                                             installed=lambda: [])
        assert type(raised.value).__name__ == "InstallationAbortedError" and calls[0][1] is True
        return
    env.pip_install = dependencies.asked_once(slicer_5_11_pip_install(calls, cancel=True, install=env.pip_install))
    assert [s.requirement.distribution for s in env.ensure()] == ["scipy"]  # no second question: installed
    assert calls and all(interactive is False for _, interactive in calls)
    # an installer that takes no 'interactive' (5.2-5.10) is called as before; its Cancel-like error is the decline
    older = []
    dependencies.asked_once(lambda requirements: older.append(requirements))(["scipy>=1.9"])
    assert older == [["scipy>=1.9"]]
    aborting = slicer_5_11_pip_install([], cancel=True)
    with pytest.raises(dependencies.DependencyDeclinedError, match="Nothing was installed"):
        dependencies.asked_once(lambda args: aborting(args))(["scipy>=1.9"])  # no 'interactive' in its signature
    # slicer.util.pip_install(requirements, **kwargs) of Slicer 5.11+ (slicer-core's util.py) hands its keywords to
    # slicer.packaging's: its signature names no 'interactive', and Slicer asked again (helper-406's audit)
    forwarded = []
    packaging_install = slicer_5_11_pip_install(forwarded, cancel=True)

    def util_pip_install(requirements, **kwargs):
        return packaging_install(requirements, **kwargs)
    dependencies.asked_once(util_pip_install)(["scipy>=1.9"])
    assert forwarded == [(["scipy>=1.9"], False)]
    # keywords that end where 'interactive' is unknown (a wrapper of a subprocess call): called as before
    plain = []

    def keywords_to_a_subprocess(requirements, **kwargs):
        if kwargs:
            raise TypeError(f"Popen.__init__() got an unexpected keyword argument '{next(iter(kwargs))}'")
        plain.append(requirements)
    dependencies.asked_once(keywords_to_a_subprocess)(["scipy>=1.9"])
    assert plain == [["scipy>=1.9"]]
    import subprocess

    def failing(args, interactive=True):
        raise subprocess.CalledProcessError(1, ["uv"])
    with pytest.raises(subprocess.CalledProcessError):  # pip's failure keeps its own path (its reason is quoted)
        dependencies.asked_once(failing)(["scipy>=1.9"])


def test_a_failed_torch_install_and_a_version_conflict_say_what_pip_said():
    conflict = ["Collecting monai>=1.3",  # pip 23.0's words for monai>=1.5 under torch==2.1.2 (run here)
                "ERROR: Cannot install monai==1.5.0 and monai==1.5.2 because these package versions have "
                "conflicting dependencies.", "", "The conflict is caused by:",
                "    monai 1.5.2 depends on torch>=2.4.1", "    The user requested (constraint) torch==2.1.2", "",
                "ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/"
                "dependency-resolution/#dealing-with-dependency-conflicts"]
    installed = dict(ALL_OK)
    del installed["torch"]
    env = FakeEnvironment(installed)

    def install_torch(requirement):  # PyTorchUtils' installTorch: light-the-torch through _executePythonModule
        import subprocess
        print("ERROR: No matching distribution found for torch>=2.1")
        raise subprocess.CalledProcessError(1, ["PythonSlicer", "-m", "light_the_torch", "install"])
    with pytest.raises(dependencies.DependencyError, match=r"Installing PyTorch .*failed.*\n.*\n  ERROR: No match"):
        env.ensure(install_torch=install_torch)
    message = dependencies.install_failure_message("monai", __import__("subprocess").CalledProcessError(1, "pip"),
                                                   conflict)
    assert "  The user requested (constraint) torch==2.1.2" in message and "No release fits" in message
    assert "internet" not in message
    long_output = ["ERROR: first"] + [f"line {i}" for i in range(40)]
    reason = dependencies.pip_reason(long_output)
    assert len(reason) == dependencies.PIP_REASON_LINES and reason[0] == "ERROR: first" and reason[-1] == "..."


def test_no_message_sends_the_user_to_a_plain_pip_install():
    """The declined, still-wrong and self-test messages pointed to slicer.util.pip_install, which has no pins: for a
    torch 2.3 and the newest monai (needs torch >= 2.4.1) pip upgrades torch from PyPI (CPU-only on Windows),
    replacing the CUDA build; the module's own install keeps it. They send the user to the module's install."""
    env = FakeEnvironment(dict(ALL_OK, scipy="1.8.1"))
    env.pip_install = lambda args: None  # pip "succeeds" but changes nothing
    with pytest.raises(dependencies.DependencyError) as still_wrong:
        env.ensure()
    statuses = dependencies.check_requirements(version_of=env.version_of, requires_of=env.requires_of,
                                               find_spec=env.find_spec)
    skipped = dependencies.self_test_skip_reason(statuses, testing_mode=True, install=lambda: None)
    for message in (dependencies.DECLINED_MESSAGE, str(still_wrong.value), skipped):
        assert "pip_install(" not in message and "pip_install)" not in message, message
        assert "from the Python console" not in message, message
    assert "Not with a plain slicer.util.pip_install" in dependencies.DECLINED_MESSAGE


def test_the_install_messages_do_not_send_an_update_compare_or_self_check_user_to_segment():
    """The install is started by Segment, Update lesion table, Compare or the self-check (scripts/slicer_selfcheck.py),
    but a failed install (no internet) ended "then click Segment again" and a declined one "Click Segment again to
    install them": a reader who had clicked Compare was sent to a button that segments. Both are worded neutrally."""
    import subprocess

    failed = dependencies.install_failure_message("monai", subprocess.CalledProcessError(1, "pip"), OFFLINE_PIP_OUTPUT)
    for message in (failed, dependencies.DECLINED_MESSAGE):
        assert "Segment again" not in message and "again" in message, message
    assert "check the internet connection" in failed


def test_the_installed_versions_and_requirements_are_read_from_this_pythons_metadata():
    """The real defaults of the check (the tests above pass stand-ins): a distribution's version and requirement
    strings from its metadata, None and [] for one that is not installed (nothing imported, no network)."""
    import numpy
    import scipy
    assert dependencies.installed_version("numpy") == numpy.__version__
    assert dependencies.installed_version("no-such-distribution-livertumorseg") is None
    numpy_pins = [r for r in dependencies.distribution_requires("scipy") if r.replace(" ", "").startswith("numpy")]
    assert numpy_pins and scipy.__version__ == dependencies.installed_version("scipy")
    assert dependencies.distribution_requires("no-such-distribution-livertumorseg") == []


def test_a_pip_failure_without_an_error_line_still_says_where_its_output_is(capsys):
    """pip killed or crashed with a traceback prints no ``ERROR:`` line: the message has no empty 'pip said:' part,
    and still gives the exit status and where pip's whole output is. The lines are recorded from a printer that
    flushes and reads the stream's attributes (Slicer's logProcessOutput), and still reach the console."""
    import subprocess

    with dependencies.recorded_output() as printed:
        print("Collecting monai>=1.3", flush=True)
        sys.stdout.write("Traceback (most recent call last):\nMemoryError\n")
        assert sys.stdout.encoding  # an attribute of the stream it stands in for
    lines = printed()
    assert lines == ["Collecting monai>=1.3", "Traceback (most recent call last):", "MemoryError"]
    assert capsys.readouterr().out == "Collecting monai>=1.3\nTraceback (most recent call last):\nMemoryError\n"
    assert dependencies.pip_reason(lines) == []
    message = dependencies.install_failure_message("monai", subprocess.CalledProcessError(-9, "pip"), lines)
    assert message.startswith("Installing monai failed (pip ended with exit status -9).\npip's whole output is in")
    assert "pip said" not in message and "internet" not in message


def test_a_torch_built_for_numpy_1_beside_numpy_2_is_too_old():
    """torch 2.1 and 2.2 (which torch>=2.1 allows) are built for numpy 1: beside numpy 2 (Slicer 5.10's) every run
    ended in 'internal error: RuntimeError: Numpy is not available' while the check said every package was ok (the
    minimum-versions audit)."""
    env = FakeEnvironment(dict(ALL_OK, torch="2.2.2+cu118", numpy="2.0.2"))
    statuses = {s.requirement.distribution: s for s in dependencies.check_requirements(
        version_of=env.version_of, requires_of=env.requires_of, find_spec=env.find_spec)}
    assert statuses["torch"].state == dependencies.TOO_OLD
    assert statuses["torch"].describe() == ("torch>=2.3 (installed: 2.2.2+cu118; it is built for numpy 1, and numpy "
                                            "2.0.2 is installed)")
    with pytest.raises(dependencies.DependencyError, match=r"PyTorch 2\.2\.2\+cu118 is too old; LiverTumorSeg needs "
                                                           r"torch>=2\.3 \(it is built for numpy 1"):
        env.ensure()
    for fine in (dict(ALL_OK, torch="2.2.2", numpy="1.26.4"), dict(ALL_OK, torch="2.3.0", numpy="2.0.2")):
        env = FakeEnvironment(fine)
        assert dependencies.problems(dependencies.check_requirements(
            version_of=env.version_of, requires_of=env.requires_of, find_spec=env.find_spec)) == []


def test_a_missing_torch_beside_numpy_2_is_asked_for_as_the_check_reads_it():
    """With numpy 2 the check counts a torch older than 2.3 too old, but the PyTorch extension was asked for >=2.1:
    where it installed 2.2, the check then failed with 'Restart Slicer and try again', and the next click advised
    uninstalling and reinstalling the same build (helper-406's audit). It is asked for >=2.3; a torch still too old
    after the install gets the too-old advice, not a restart."""
    installed = dict(ALL_OK, numpy="2.0.2")
    del installed["torch"]
    env = FakeEnvironment(installed)
    env.ensure()
    assert env.torch_calls == [">=2.3"]
    del installed["monai"]  # to be installed beside the torch
    env = FakeEnvironment(installed)

    def install_2_2(requirement):
        env.torch_calls.append(requirement)
        env.installed["torch"] = "2.2.2+cu118"
        return "torch-module"
    with pytest.raises(dependencies.DependencyError) as failed:
        env.ensure(install_torch=install_2_2)
    assert "PyTorch 2.2.2+cu118 is too old; LiverTumorSeg needs torch>=2.3" in str(failed.value)
    assert "Restart Slicer and try again" not in str(failed.value)
    assert env.pip_calls == []  # said before the others were pinned to it: a failing pip hid the cause (the review)
