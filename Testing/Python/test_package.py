"""Model package save/load round trip and every refusal case (never executing code from a file)."""
import json
import os
import re
import struct
from pathlib import Path

import pytest
import torch

from LiverTumorSegLib.errors import InputError, ModelPackageError
from LiverTumorSegLib.models import build_model
from LiverTumorSegLib.package import (
    ModelPackage,
    list_installed_models,
    load_model_package,
    load_torch_state_dict_safely,
    read_package_metadata,
    read_safetensors_header,
    resolve_model,
    save_model_package,
    weights_sha256,
)

PICKLE_LOADER_REFUSED = pytest.mark.skipif(
    tuple(int(n) for n in re.match(r"(\d+)\.(\d+)", torch.__version__).groups()) < (2, 6),
    reason="torch < 2.6: .pth weights are refused (CVE-2025-32434), which other tests check")




def _preprocessing():
    """The real default PreprocessingConfig when the preprocessing module is there, else a plain dict."""
    try:
        from LiverTumorSegLib.preprocessing import PreprocessingConfig
    except ImportError:
        return {"channels": [{"kind": "window", "level": 40, "width": 400}], "context_slices": 0}
    return PreprocessingConfig.preset("default")


def _as_dict(prep):
    return prep.to_dict() if hasattr(prep, "to_dict") else dict(prep)


PREP = _preprocessing()


def _tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("unet", in_channels=1, num_classes=3, channels=(4, 8), num_res_units=1)


@pytest.fixture
def package_path(tmp_path):
    return save_model_package(tmp_path / "tiny.safetensors", _tiny_model(), PREP,
                              metadata={"description": "test", "validation": {"dice_liver": 0.93,
                                                                              "dice_tumor": float("nan")}})


def test_loading_a_package_leaves_the_callers_random_state_as_it_was(package_path):
    """The network's random initial weights (replaced by the package's) were drawn from torch's global generator:
    a notebook that seeded torch, loaded a model (or segmented a CT) and then drew its own numbers got other
    numbers than without the load."""
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    load_model_package(package_path)
    assert torch.equal(torch.rand(3), expected)


def _rewrite_metadata(src: Path, dst: Path, change, keep_metadata_hash: bool = False) -> Path:
    """Copy package ``src`` to ``dst`` with its livertumorseg metadata dict changed by ``change(meta)``. The
    metadata's own hash is dropped and the package said to be written by 0.1.0 (a package as written before the
    hash existed; one of a later version without it is refused for that alone) unless ``keep_metadata_hash``: then
    the edit is one the loader must catch."""
    from safetensors.torch import load_file, save_file
    meta = json.loads(read_safetensors_header(src)["__metadata__"]["livertumorseg"])
    if not keep_metadata_hash:
        meta.pop("metadata_sha256")
        meta["library_version"] = "0.1.0"
    change(meta)
    save_file(load_file(str(src)), str(dst), metadata={"livertumorseg": json.dumps(meta)})
    return dst


def test_round_trip_gives_identical_output(package_path):
    model = _tiny_model().eval()
    x = torch.rand(2, 1, 37, 29)
    package = load_model_package(package_path)
    assert isinstance(package, ModelPackage)
    assert not package.model.training
    assert package.name == "tiny"
    assert package.metadata["format_version"] == 1
    assert package.metadata["labels"] == {"0": "background", "1": "liver", "2": "tumor"}
    assert package.metadata["validation"] == {"dice_liver": 0.93, "dice_tumor": None}  # NaN -> null
    assert package.metadata["architecture"]["name"] == "unet"
    assert package.sha256 == package.metadata["weights_sha256"]
    with torch.no_grad():
        assert torch.equal(model(x), package.model(x))
    assert _as_dict(package.preprocessing) == _as_dict(PREP)
    assert type(package.preprocessing) is type(PREP)


def test_metadata_header_only_and_sha_definition(package_path):
    meta = read_package_metadata(package_path)
    assert meta["name"] == "tiny" and meta["description"] == "test"
    assert meta["architecture"]["options"]["channels"] == [4, 8]
    assert meta["weights_sha256"] == weights_sha256(_tiny_model().state_dict())
    # hash depends on names, values and shapes
    sd = _tiny_model().state_dict()
    changed = dict(sd)
    key = sorted(k for k in sd if sd[k].dtype == torch.float32)[0]
    changed[key] = sd[key] + 1e-3
    assert weights_sha256(changed) != weights_sha256(sd)
    reshaped = {"a": torch.zeros(2, 3)}
    assert weights_sha256(reshaped) != weights_sha256({"a": torch.zeros(3, 2)})
    assert weights_sha256({"a": torch.zeros(2)}) != weights_sha256({"b": torch.zeros(2)})


def test_save_refuses_overwrite_and_wrong_suffix(package_path, tmp_path):
    from LiverTumorSegLib.errors import OutputExistsError
    with pytest.raises(OutputExistsError):
        save_model_package(package_path, _tiny_model(), PREP)
    save_model_package(package_path, _tiny_model(1), PREP, overwrite=True)
    assert read_package_metadata(package_path)["weights_sha256"] == weights_sha256(_tiny_model(1).state_dict())
    with pytest.raises(InputError):
        save_model_package(tmp_path / "model.pt", _tiny_model(), PREP)
    with pytest.raises(InputError):
        save_model_package(tmp_path / "m.safetensors", torch.nn.Conv2d(1, 3, 1), PREP)  # not build_model's


def test_save_unwraps_wrappers(tmp_path):
    model = _tiny_model()
    wrapped = torch.nn.DataParallel(model)
    path = save_model_package(tmp_path / "wrapped.safetensors", wrapped, PREP)
    keys = set(load_model_package(path).model.state_dict())
    assert keys == set(model.state_dict()) and not any(k.startswith("module.") for k in keys)


def test_refuses_nonexistent_path(tmp_path):
    with pytest.raises(ModelPackageError, match="does not exist"):
        load_model_package(tmp_path / "nothing.safetensors")


@pytest.mark.parametrize("content", [
    b"\x89PNG\r\n\x1a\n" + bytes(200),   # a PNG
    b"this is a plain text file, not a model\n" * 4,
    b"abc",                               # shorter than the length field
])
def test_refuses_wrong_file_types(tmp_path, content):
    path = tmp_path / "wrong.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelPackageError, match="not a LiverTumorSeg model package"):
        load_model_package(path)
    with pytest.raises(ModelPackageError):
        read_package_metadata(path)


def test_a_zipped_package_is_named_as_a_zip_to_unzip_not_a_pickle(tmp_path):
    """A package zipped for sending was called 'a PyTorch pickle (.pt/.pth)'."""
    import zipfile

    package = save_model_package(tmp_path / "m.safetensors", _tiny_model(), PREP)
    zipped = tmp_path / "m.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.write(package, "models/m.safetensors")
    with pytest.raises(ModelPackageError, match="it is a zip archive holding models/m.safetensors; unzip it"):
        read_package_metadata(zipped)
    torch.save({"w": torch.zeros(2)}, str(tmp_path / "w.pt"))  # a zip too, with no .safetensors in it
    with pytest.raises(ModelPackageError, match="PyTorch pickle"):
        read_package_metadata(tmp_path / "w.pt")


def test_monai_bundles_onnx_files_and_other_zips_are_named_as_what_they_are(tmp_path):
    """A zipped MONAI bundle and any zip without a package were called 'a PyTorch pickle (.pt/.pth)', an ONNX file a
    truncated file whose header length is 8031177557570357256 bytes, a MONAI bundle folder just 'a folder', a
    gzipped package 'truncated or of another type'."""
    import gzip
    import zipfile

    bundle = tmp_path / "spleen_ct_segmentation"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    (bundle / "configs" / "metadata.json").write_text('{"name": "spleen"}')
    torch.save({"w": torch.zeros(2)}, str(bundle / "models" / "model.pt"))
    with pytest.raises(ModelPackageError, match="is a folder holding a MONAI bundle. LiverTumorSeg does not run MONAI "
                                                "bundles .*give a LiverTumorSeg .safetensors model package"):
        read_package_metadata(bundle)
    zipped = tmp_path / "spleen_ct_segmentation.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.write(bundle / "configs" / "metadata.json", "spleen_ct_segmentation/configs/metadata.json")
        archive.write(bundle / "models" / "model.pt", "spleen_ct_segmentation/models/model.pt")
    with pytest.raises(ModelPackageError, match="it is a zipped MONAI bundle. LiverTumorSeg does not run"):
        read_package_metadata(zipped)
    other = tmp_path / "results.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("seg.nii.gz", b"x")
        archive.writestr("report.json", b"{}")
    with pytest.raises(ModelPackageError, match=r"it is a zip archive \(seg.nii.gz, report.json\) holding no "
                                                r"\.safetensors model package; give the package itself"):
        read_package_metadata(other)
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x08\x12\x07pytorch\x1a\x062.1.0:\xab\x92\x08\n9\n\x0fonnx::Conv_0" + bytes(200))
    renamed = tmp_path / "model.safetensors"  # by its bytes too, under a package's suffix
    renamed.write_bytes(onnx.read_bytes())
    for path in (onnx, renamed):
        with pytest.raises(ModelPackageError, match="it is an ONNX model file, which LiverTumorSeg does not run: give "
                                                    "the .safetensors model package it was exported from"):
            read_package_metadata(path)
    gzipped = tmp_path / "model.safetensors.gz"  # a package compressed for download: 'truncated or of another type'
    gzipped.write_bytes(gzip.compress(save_model_package(tmp_path / "m.safetensors", _tiny_model(), PREP).read_bytes()))
    with pytest.raises(ModelPackageError, match=r"it is gzip-compressed; decompress it \(gunzip"):
        read_package_metadata(gzipped)
    script = tmp_path / "model.ts"
    torch.jit.save(torch.jit.script(torch.nn.Conv2d(1, 1, 1)), str(script))  # TorchScript: a zip holding code
    with pytest.raises(ModelPackageError, match="PyTorch pickle"):
        read_package_metadata(script)


@pytest.mark.parametrize("length_bytes", [b"\x08", b"PK", b"\x80", b"\x1f\x8b"])
def test_a_truncated_package_is_not_taken_for_another_file_type(package_path, tmp_path, length_bytes):
    """A package cut inside its header, whose header length begins with the magic bytes of an ONNX file (and whose
    header mentions onnx), a zip, a pickle or gzip, is called truncated, not that file type."""
    data = package_path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(length_bytes + data[len(length_bytes):200].replace(b"test", b"onnx"))
    with pytest.raises(ModelPackageError, match="does not fit the file size"):
        read_package_metadata(cut)


def test_weight_files_in_the_user_folder_that_are_no_package_are_named(tmp_path, monkeypatch, capsys):
    """A .pt or a zipped package dropped in the user models folder was left out of 'models' without a word."""
    from LiverTumorSegLib.cli import main

    user = tmp_path / "user"
    user.mkdir()
    (user / "weights.pt").write_bytes(b"PK")
    (user / "notes.txt").write_text("not weights")
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(user))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "not listed, no model package (.safetensors): weights.pt in the user folder" in out
    assert "notes.txt" not in out
    assert main(["models", "--json"]) == 0  # the JSON named them too (it left them out)
    listed = json.loads(capsys.readouterr().out)
    assert listed["user_models_dir_other_weight_files"] == [str(user / "weights.pt")]


def test_a_folder_named_like_a_package_in_the_user_folder_is_named_as_skipped(tmp_path, monkeypatch, capsys):
    """A folder named 'x.safetensors' (an unzipped package, a run's output) or 'y.pt' in the user models folder was
    left out of 'models' without a word: it is named, with why, in the text and in --json."""
    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.package import skipped_weight_entries

    user = tmp_path / "user"
    (user / "x.safetensors").mkdir(parents=True)
    (user / "y.pt").mkdir()
    (user / "runs").mkdir()
    (user / ".hidden.safetensors").mkdir()
    save_model_package(user / "clinic.safetensors", _tiny_model(), PREP)
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(user))
    assert skipped_weight_entries(user) == [(user / "x.safetensors", "a folder, not a file"),
                                            (user / "y.pt", "a folder, not a file")]
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert ("skipped in the user folder: 'x.safetensors' (a folder, not a file), 'y.pt' (a folder, not a file); a "
            "model package is one .safetensors file") in out
    assert "clinic.safetensors" in out and "'runs'" not in out and "hidden" not in out
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [Path(e["path"]).name for e in listed["user_models_dir_skipped"]] == ["x.safetensors", "y.pt"]
    assert skipped_weight_entries(tmp_path / "missing") == []


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not hasattr(os, "symlink"), reason="named pipes, symbolic links")
def test_a_dead_link_and_a_named_pipe_in_the_user_folder_are_named_as_skipped_without_being_opened(
        tmp_path, monkeypatch, capsys):
    """A link to moved weights ('old.pt') and a named pipe ('streamed.safetensors') in the user models folder are
    named with why they are skipped; the pipe is never opened (opening it waits for a writer that never comes)."""
    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.package import skipped_weight_entries

    user = tmp_path / "user"
    user.mkdir()
    (user / "old.pt").symlink_to(tmp_path / "moved_away.pt")
    os.mkfifo(user / "streamed.safetensors")
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(user))
    assert skipped_weight_entries(user) == [(user / "old.pt", "a link whose target is gone"),
                                            (user / "streamed.safetensors", "not a regular file")]
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert ("skipped in the user folder: 'old.pt' (a link whose target is gone), 'streamed.safetensors' (not a "
            "regular file)") in out


def test_the_models_listing_prints_no_control_characters_from_a_package(tmp_path, monkeypatch, capsys):
    """A package's name (and validation keys) holding a newline or a terminal escape sequence was printed raw by
    'livertumorseg models': the name could clear the screen or add a fake line, such as a fake default model."""
    from LiverTumorSegLib.cli import main

    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(user))
    save_model_package(user / "shared.safetensors", _tiny_model(), PREP,
                       metadata={"name": "clinic\x1b[2J\nfake (default)", "validation": {"dice\x07liver": 0.5}})
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    line = next(text for text in out.splitlines() if "shared.safetensors" in text)
    assert line.startswith("  clinic\\x1b[2J\\nfake (default)") and "dice\\x07liver=0.500" in line
    assert not any(text.startswith("fake") for text in out.splitlines())


def test_a_quoted_tilde_in_a_package_path_is_named(package_path, tmp_path, monkeypatch):
    """--model '~/models/x.safetensors' (quoted, or --model=~/..., which the shell leaves alone) said only that the
    package does not exist, while it was there in the home folder; input paths name the quoted '~'."""
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    package_path.rename(home / "models" / "x.safetensors")
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(ModelPackageError, match=r"does not exist \(a quoted '~' is not your home folder: write the "
                                                r"path without quotes, or in full, such as "
                                                r"'.*home/models/x\.safetensors'\)\. Check the path"):
        load_model_package("~/models/x.safetensors")
    with pytest.raises(ModelPackageError, match=r"'nothing\.safetensors' does not exist\. Check the path"):
        resolve_model("nothing.safetensors")


def test_another_program_s_safetensors_file_is_refused_saying_what_to_give(tmp_path):
    """A Hugging Face style .safetensors file was refused with 'Create packages with save_model_package', which
    cannot turn another program's network into a LiverTumorSeg one."""
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({"embeddings.weight": torch.zeros(10, 4), "lm_head.weight": torch.zeros(4, 10)}, str(path),
              metadata={"format": "pt"})
    for refused in (read_package_metadata, load_model_package):
        with pytest.raises(ModelPackageError, match=r"is a safetensors file but not a LiverTumorSeg model package: it "
                                                    r"holds 2 tensor\(s\) and no 'livertumorseg' record .* Give a "
                                                    r"LiverTumorSeg model package \('livertumorseg models' lists") as e:
            refused(path)
        assert "save_model_package" not in str(e.value)


def test_hidden_files_in_a_models_folder_are_not_listed_as_packages(tmp_path, monkeypatch, caplog):
    """A package's temporary (.NAME.*.tmp.safetensors: being written, or left by a killed run) was listed as a second
    package of the same name, and '--model NAME' refused as ambiguous; macOS's AppleDouble '._NAME.safetensors' beside a
    package copied to a USB stick was listed as unusable, with a warning on every '--model NAME'."""
    import logging
    import shutil

    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(user))
    package = save_model_package(user / "clinic.safetensors", _tiny_model(), PREP)
    shutil.copy(package, user / ".clinic.1234-ab.tmp.safetensors")
    (user / "._clinic.safetensors").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(4000))
    (user / "._weights.pt").write_bytes(b"\x00\x05\x16\x07" + bytes(100))
    with caplog.at_level(logging.WARNING):
        assert resolve_model("clinic") == package
    assert "skipping unusable" not in caplog.text
    assert [e["path"] for e in list_installed_models() if e["source"] == "user"] == [str(package)]
    from LiverTumorSegLib.package import other_weight_files
    assert other_weight_files(user) == []
    assert load_model_package(user / ".clinic.1234-ab.tmp.safetensors").name == "clinic"  # a path still loads


@pytest.mark.parametrize("labels", [None, {}])
def test_a_package_recording_no_labels_gives_the_default_labels(tmp_path, labels):
    """ModelPackage.labels (documented as a dict) was None for a package saved with labels=None."""
    package = load_model_package(save_model_package(tmp_path / "m.safetensors", _tiny_model(), PREP,
                                                    metadata={"labels": labels}))
    assert package.labels == {"0": "background", "1": "liver", "2": "tumor"}


def test_a_package_named_like_a_path_is_noted_and_found(tmp_path, monkeypatch, capsys):
    """A package named 'abdomen/liver' (train --name) was listed under that name, but '--model abdomen/liver' is read
    as a file path and said only 'does not exist'."""
    from LiverTumorSegLib.cli import main

    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(user))
    monkeypatch.chdir(tmp_path)
    package = save_model_package(user / "liver2.safetensors", _tiny_model(), PREP, metadata={"name": "abdomen/liver"})
    assert main(["models"]) == 0
    assert ("note: '--model abdomen/liver' is read as a file path, not this package's name: give --model liver2 "
            "(its file name) or its path") in capsys.readouterr().out
    with pytest.raises(ModelPackageError, match="an installed package is named 'abdomen/liver', but --model reads a "
                                                "name with a path separator .* give --model liver2 "):
        resolve_model("abdomen/liver")
    assert resolve_model("liver2") == package


def test_a_package_named_like_a_path_whose_file_name_another_package_is_named_is_given_by_its_path(
        tmp_path, monkeypatch, capsys):
    """'abdomen/liver' in liver.safetensors beside a package named 'liver': '--model liver' is refused as ambiguous,
    so both the listing's note and the refusal of '--model abdomen/liver' give its path only (both offered
    '--model liver'; the other advice texts already checked that the stem reaches the package alone)."""
    from LiverTumorSegLib.cli import main

    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(user))
    monkeypatch.chdir(tmp_path)
    save_model_package(user / "liver.safetensors", _tiny_model(), PREP, metadata={"name": "abdomen/liver"})
    save_model_package(user / "other.safetensors", _tiny_model(), PREP, metadata={"name": "liver"})
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "is read as a file path, not this package's name: give its path" in out
    assert "give --model liver " not in out
    with pytest.raises(ModelPackageError, match="but --model reads a name with a path separator .* give its path '"):
        resolve_model("abdomen/liver")


def test_a_user_package_named_default_is_noted_with_its_file_name(tmp_path, monkeypatch, capsys):
    """A user package named 'default' (a former bundled default restored into the user folder) was noted 'give its
    path', though '--model v3' (its file name) reaches it (the package audit)."""
    from LiverTumorSegLib.cli import main

    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(user))
    package = save_model_package(user / "v3.safetensors", _tiny_model(), PREP, metadata={"name": "default"})
    assert main(["models"]) == 0
    assert ("'--model default' means the bundled default, not this package: give --model v3 (its file name) or "
            "its path") in capsys.readouterr().out
    assert resolve_model("v3") == package
    # a file name with a space is given quoted for a shell ('--model my v3' was printed, which a shell splits)
    package.rename(user / "my v3.safetensors")
    assert main(["models"]) == 0
    assert ("give --model 'my v3' (its file name) or its path") in capsys.readouterr().out


def test_an_installed_package_s_file_name_given_as_model_is_named(tmp_path, monkeypatch):
    """'--model liver2.safetensors' (the file name 'livertumorseg models' lists) is read as a path in the working
    folder, and said only 'does not exist' although that package is installed."""
    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(user))
    monkeypatch.chdir(tmp_path)
    package = save_model_package(user / "liver 2.safetensors", _tiny_model(), PREP)
    with pytest.raises(ModelPackageError, match="an installed package has that file name .*give --model 'liver 2' "
                                                "\\(without the suffix\\) or its full path"):
        resolve_model("liver 2.safetensors")
    assert resolve_model("liver 2") == package
    with pytest.raises(ModelPackageError, match="does not exist. Check the path"):
        resolve_model("other.safetensors")


def test_refuses_torch_pickle(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(_tiny_model().state_dict(), path)
    with pytest.raises(ModelPackageError, match="pickle"):
        load_model_package(path)


def test_bytes_appended_to_a_package_are_called_so_not_truncation(package_path, tmp_path):
    """7 bytes appended were reported as 'corrupt or truncated', of a file longer than it should be."""
    appended = tmp_path / "appended.safetensors"
    appended.write_bytes(package_path.read_bytes() + b"trailer")
    with pytest.raises(ModelPackageError, match=r"corrupt: 7 byte\(s\) follow the tensors' \d+ bytes of data") as refused:
        load_model_package(appended)
    assert "truncated" not in str(refused.value) and str(refused.value).endswith("Download or copy it again.")


def test_refuses_truncated_file(package_path, tmp_path):
    data = package_path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) - 100])
    with pytest.raises(ModelPackageError, match="truncated"):
        load_model_package(cut)
    cut.write_bytes(data[:20])  # inside the header
    with pytest.raises(ModelPackageError):
        read_package_metadata(cut)


def test_refuses_corrupt_header_json(package_path, tmp_path):
    data = bytearray(package_path.read_bytes())
    (n,) = struct.unpack("<Q", bytes(data[:8]))
    data[8 + n // 2] = ord("\x01")  # control character inside the JSON
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelPackageError, match="JSON"):
        load_model_package(bad)


def test_a_header_larger_than_any_package_s_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    """A file in the models folder with a 99 MB header (under safetensors' 100 MB limit) of 1.7 million empty tensors
    took 9.5 s and 1.2 GB to parse on every listing, every segment run, before it was refused (the package audit).
    A header longer than a package's can be is refused unread, and the listing names it unusable."""
    import json as json_module

    from LiverTumorSegLib import package as package_module
    from LiverTumorSegLib.package import list_installed_models, read_safetensors_header

    monkeypatch.setattr(package_module, "MAX_PACKAGE_HEADER_BYTES", 4096)  # a small file stands in for a 99 MB one
    entries = {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(200)}
    text = json_module.dumps(entries).encode("utf-8")
    assert len(text) > 4096
    folder = tmp_path / "models"
    folder.mkdir()
    many = folder / "many.safetensors"
    many.write_bytes(struct.pack("<Q", len(text)) + text)
    parsed = []
    monkeypatch.setattr(package_module.json, "loads", lambda *a, **k: parsed.append(1) or {})
    with pytest.raises(ModelPackageError, match=r"its header is [\d,]+ bytes, more than a model package's can be "
                                                r"\(4,096: .*Remove it from the models folder"):
        read_safetensors_header(many)
    assert parsed == []  # refused before the JSON was read
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(folder))
    (listed,) = [e for e in list_installed_models(warn=False) if e["path"] == str(many)]
    assert "more than a model package's can be" in listed["error"]


def test_refuses_tampered_weights(package_path, tmp_path):
    data = bytearray(package_path.read_bytes())
    for i in range(1, 5):
        data[-4 * i] ^= 0xFF  # flip bytes inside the last tensor's data
    bad = tmp_path / "tampered.safetensors"
    bad.write_bytes(bytes(data))
    read_package_metadata(bad)  # the header is intact ...
    with pytest.raises(ModelPackageError, match="integrity"):
        load_model_package(bad)  # ... but the weights are not


def test_every_bundled_package_matches_the_checksum_list():
    """Resources/Models/SHA256SUMS lists each shipped package's file hash; rewriting one without
    save_model_package / store_robustness (which update the list) makes it unloadable, and this test says so."""
    from LiverTumorSegLib.package import BUNDLED_CHECKSUMS, file_sha256
    from LiverTumorSegLib.resources import bundled_models_dir

    folder = bundled_models_dir()
    listed = dict(line.split()[::-1] for line in (folder / BUNDLED_CHECKSUMS).read_text().splitlines())
    assert sorted(listed) == sorted(p.name for p in folder.glob("*.safetensors"))
    for name, digest in listed.items():
        assert file_sha256(folder / name) == digest, name


def test_edited_metadata_of_a_bundled_package_is_refused(package_path, tmp_path, monkeypatch):
    """The weights' hash cannot see a valid metadata edit (a window level 40 -> 300 segmented a 9 mL liver);
    the bundled folder's checksum list does."""
    monkeypatch.setenv("LIVERTUMORSEG_RESOURCES", str(tmp_path / "res"))
    models = tmp_path / "res" / "Models"
    models.mkdir(parents=True)
    saved = save_model_package(models / "clinic.safetensors", _tiny_model(), PREP)
    assert (models / "SHA256SUMS").read_text().endswith("  clinic.safetensors\n")
    load_model_package("clinic")

    def window_300(meta):
        meta["preprocessing"]["channels"][0]["level"] = 300.0

    edited = _rewrite_metadata(saved, tmp_path / "edited.safetensors", window_300)
    load_model_package(edited)  # without a metadata hash (older packages), outside the bundled folder: it loads
    saved.write_bytes(edited.read_bytes())
    with pytest.raises(ModelPackageError, match="failed its integrity check.*SHA256SUMS.*git checkout"):
        load_model_package("clinic")


def test_edited_metadata_is_refused_by_the_packages_own_metadata_hash(package_path, tmp_path, monkeypatch):
    """Anywhere, not only in the bundled folder: a saved package records its metadata's SHA-256, so a valid
    edit (window level 40 -> 300, weights untouched) is refused on load and listed as unusable."""
    from LiverTumorSegLib.package import list_installed_models, metadata_sha256

    meta = read_package_metadata(package_path)
    assert meta["metadata_sha256"] == metadata_sha256(meta)
    assert metadata_sha256(dict(meta, name="other")) != meta["metadata_sha256"]
    assert metadata_sha256(meta) == metadata_sha256(json.loads(json.dumps(meta)))  # parse -> dump is stable

    def window_300(m):
        m["preprocessing"]["channels"][0]["level"] = 300.0

    edited = _rewrite_metadata(package_path, tmp_path / "edited.safetensors", window_300, keep_metadata_hash=True)
    with pytest.raises(ModelPackageError, match="metadata .*was changed after the package was saved"):
        load_model_package(edited)
    with pytest.raises(ModelPackageError, match="integrity check"):
        read_package_metadata(edited)
    relabelled = _rewrite_metadata(package_path, tmp_path / "labels.safetensors",
                                   lambda m: m["labels"].update({"2": "liver lesion"}), keep_metadata_hash=True)
    with pytest.raises(ModelPackageError, match="integrity check"):
        load_model_package(relabelled)
    bad_digest = _rewrite_metadata(package_path, tmp_path / "digest.safetensors",
                                   lambda m: m.update(metadata_sha256="xyz"), keep_metadata_hash=True)
    with pytest.raises(ModelPackageError, match="'metadata_sha256' is not a SHA-256"):
        load_model_package(bad_digest)

    models = tmp_path / "user_models"
    models.mkdir()
    (models / "edited.safetensors").write_bytes(edited.read_bytes())
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(models))
    entries = [e for e in list_installed_models(warn=False) if e["path"].endswith("edited.safetensors")]
    assert len(entries) == 1 and "integrity check" in entries[0]["error"]


def test_metadata_hash_is_reserved_and_survives_resaving(package_path, tmp_path):
    from LiverTumorSegLib.package import carried_metadata
    with pytest.raises(InputError, match="metadata_sha256"):
        save_model_package(tmp_path / "x.safetensors", _tiny_model(), PREP, {"metadata_sha256": "0" * 64})
    first = load_model_package(package_path)
    again = save_model_package(tmp_path / "again.safetensors", first.model, first.preprocessing,
                               carried_metadata(first.metadata))
    assert load_model_package(again).metadata["validation"] == first.metadata["validation"]


def test_refuses_unknown_architecture(package_path, tmp_path):
    bad = _rewrite_metadata(package_path, tmp_path / "arch.safetensors",
                            lambda m: m["architecture"].update(name="transformer9000"))
    with pytest.raises(ModelPackageError, match="transformer9000"):
        load_model_package(bad)


def test_refuses_a_network_with_another_class_count(package_path, tmp_path):
    # a 4-class network wrote label 3 into maps documented as 0/1/2; a 1-class one failed every segment later
    bad = _rewrite_metadata(package_path, tmp_path / "classes.safetensors",
                            lambda m: m["architecture"].update(num_classes=4))
    with pytest.raises(ModelPackageError, match="4 output classes.*0 background, 1 liver, 2 tumor"):
        load_model_package(bad)


def test_refuses_a_slice_grouping_network_whose_slices_differ_from_the_preprocessing(tmp_path):
    # DALU-Net's ConvLSTM runs over num_slices neighbouring slices; with context_slices 0 it ran over the three HU
    # windows of one slice, and with 2 it cut five slices into three groups, without a word
    from LiverTumorSegLib.models import build_model, slice_grouping_problem
    from LiverTumorSegLib.training.trainer import check_model_spec

    assert slice_grouping_problem("dalunet", {}, 3) == "" and slice_grouping_problem("unet", {}, 1) == ""
    assert "num_slices=3" in slice_grouping_problem("dalunet", {}, 1)
    assert slice_grouping_problem("dalunet", {"num_slices": 5}, 5) == ""
    with pytest.raises(InputError, match="context_slices 0"):
        check_model_spec("dalunet", 3, {"channels": [4, 8]}, slices_per_input=1)
    from LiverTumorSegLib.preprocessing import PreprocessingConfig

    one_slice = PreprocessingConfig.from_dict(dict(PREP.to_dict(), context_slices=0))
    model = build_model("dalunet", in_channels=one_slice.in_channels, num_classes=3, channels=[4, 8], num_slices=1)
    saved = save_model_package(tmp_path / "dalu.safetensors", model, one_slice)
    assert load_model_package(saved).architecture["name"] == "dalunet"        # consistent: loads
    grouped = build_model("dalunet", in_channels=one_slice.in_channels, num_classes=3, channels=[4, 8], num_slices=3)
    from LiverTumorSegLib.package import check_input_channels

    check_input_channels(load_model_package(saved))
    bad = load_model_package(save_model_package(tmp_path / "dalu_bad.safetensors", grouped, one_slice))
    with pytest.raises(ModelPackageError, match="num_slices=3"):   # the audit's package: three windows as slices
        check_input_channels(bad)                                  # (what segment runs on every package it loads)


def test_refuses_option_mismatch(package_path, tmp_path):
    bad = _rewrite_metadata(package_path, tmp_path / "opts.safetensors",
                            lambda m: m["architecture"]["options"].update(channels=[4, 16]))
    with pytest.raises(ModelPackageError, match="do not match"):
        load_model_package(bad)
    bad2 = _rewrite_metadata(package_path, tmp_path / "opts2.safetensors",
                             lambda m: m["architecture"]["options"].update(num_res_units=0))
    with pytest.raises(ModelPackageError, match="missing|unexpected"):
        load_model_package(bad2)


def test_refuses_other_format_version_and_plain_safetensors(package_path, tmp_path):
    from safetensors.torch import save_file
    bad = _rewrite_metadata(package_path, tmp_path / "v2.safetensors", lambda m: m.update(format_version=2))
    with pytest.raises(ModelPackageError, match="format_version 2; this library .* reads version 1. Update"):
        load_model_package(bad)
    # the version as text was told to update to the version it already names (the package audit)
    text = _rewrite_metadata(package_path, tmp_path / "text.safetensors", lambda m: m.update(format_version="1"))
    with pytest.raises(ModelPackageError) as info:
        load_model_package(text)
    assert "format_version '1', which must be a whole number" in str(info.value)
    assert "Update LiverTumorSeg" not in str(info.value)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, str(plain))
    with pytest.raises(ModelPackageError, match="not a LiverTumorSeg model package"):
        read_package_metadata(plain)


class _Payload:
    """Unpickling this object creates ``target`` (stands in for arbitrary code execution)."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    # control: the payload really runs when unpickled unsafely
    control_target = tmp_path / "control_pwned"
    control = tmp_path / "control.pt"
    torch.save({"w": _Payload(control_target)}, control)
    torch.load(control, weights_only=False)
    assert control_target.exists()

    target = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"conv.weight": torch.zeros(1), "x": _Payload(target)}, evil)
    with pytest.raises(ModelPackageError):
        load_model_package(evil)
    with pytest.raises(ModelPackageError, match="Refused"):
        load_torch_state_dict_safely(evil)
    evil_renamed = tmp_path / "evil.safetensors"
    evil_renamed.write_bytes(evil.read_bytes())
    with pytest.raises(ModelPackageError):
        load_model_package(evil_renamed)
    with pytest.raises(ModelPackageError):
        load_torch_state_dict_safely(evil_renamed)
    assert not target.exists()


def test_a_pipe_named_like_a_package_is_refused_without_waiting_for_a_writer(tmp_path):
    """A named pipe (e.g. a download streamed through mkfifo) blocks whoever opens it until a writer comes: loading
    must refuse it by its type, before opening it, and say what to give."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this platform")
    pipe = tmp_path / "streamed.safetensors"
    os.mkfifo(pipe)
    for read in (load_model_package, read_package_metadata):
        with pytest.raises(ModelPackageError, match=r"is not a regular file \(a device, pipe or socket\); give the "
                                                    r"path of a \.safetensors model package file"):
            read(pipe)


def test_a_plain_python_pickle_is_refused_as_a_pickle(tmp_path):
    """A pickle written by pickle.dump (protocol 2 or later begins with byte 0x80, not with torch's zip) is named a
    pickle that is never loaded, whatever its suffix, and nothing of it runs."""
    import pickle

    for name in ("weights.pkl", "weights.safetensors"):
        path = tmp_path / name
        path.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}, protocol=2))
        with pytest.raises(ModelPackageError, match="looks like a PyTorch pickle .* never loaded because unpickling "
                                                    "can run arbitrary code"):
            load_model_package(path)


@pytest.mark.parametrize("preprocessing, named", [
    (None, "A model package needs the preprocessing configuration used in training."),
    ([40, 400], "preprocessing must be a PreprocessingConfig or a dict, got list."),
])
def test_save_without_a_usable_preprocessing_writes_nothing(tmp_path, preprocessing, named):
    """A package without the preprocessing its network was trained with could not segment: refused by name."""
    with pytest.raises(InputError) as refused:
        save_model_package(tmp_path / "model.safetensors", _tiny_model(), preprocessing)
    assert str(refused.value) == named
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_metadata_json_cannot_hold_and_writes_nothing(tmp_path):
    """A set (e.g. the training cases as a Python set) has no JSON form: refused as such, nothing written."""
    with pytest.raises(InputError, match="Package metadata must be JSON-serialisable: Object of type set"):
        save_model_package(tmp_path / "model.safetensors", _tiny_model(), PREP,
                           metadata={"training": {"cases": {"case_001", "case_002"}}})
    assert list(tmp_path.iterdir()) == []


@PICKLE_LOADER_REFUSED
@pytest.mark.parametrize("content", [{"epoch": 3}, [torch.zeros(2)]], ids=["dict of numbers", "list of tensors"])
def test_weights_that_are_no_state_dict_are_named(tmp_path, content):
    """A checkpoint holding no {name: tensor} mapping is refused saying so (not a KeyError later)."""
    path = tmp_path / "checkpoint.pt"
    torch.save(content, path)
    with pytest.raises(ModelPackageError, match=r"does not hold a \{name: tensor\} state dict"):
        load_torch_state_dict_safely(path)


def test_a_weights_path_that_is_a_folder_or_a_pipe_is_named_as_such_not_as_missing(tmp_path):
    """A folder (e.g. the torchvision cache folder given for its ResNet file) or a named pipe given as the weights
    file was said not to exist, while it was there: it is now named as what it is, with what to give instead."""
    with pytest.raises(ModelPackageError, match=r"is a folder, not a weights file; give the path of the weights file "
                                                r"\(\.pt, \.pth or \.safetensors\) in it"):
        load_torch_state_dict_safely(tmp_path)
    if hasattr(os, "mkfifo"):
        pipe = tmp_path / "resnet18.pth"
        os.mkfifo(pipe)
        with pytest.raises(ModelPackageError, match=r"is not a regular file \(a device, pipe or socket\)"):
            load_torch_state_dict_safely(pipe)
    with pytest.raises(ModelPackageError, match=r"'.*gone\.pth' does not exist\. Check the path\."):
        load_torch_state_dict_safely(tmp_path / "gone.pth")


@PICKLE_LOADER_REFUSED
def test_load_torch_state_dict_safely_reads_plain_weights(tmp_path, package_path):
    sd = _tiny_model().state_dict()
    pt = tmp_path / "sd.pth"
    torch.save({"state_dict": sd, "epoch": 3}, pt)
    loaded = load_torch_state_dict_safely(pt)
    assert set(loaded) == set(sd) and all(torch.equal(loaded[k], sd[k]) for k in sd)
    from_st = load_torch_state_dict_safely(package_path)
    assert set(from_st) == set(sd)


def test_a_misspelt_model_name_is_answered_with_the_name_that_works(tmp_path, monkeypatch):
    """Before: '--model defualt' listed 'default_v10' (the package's name) but not 'default', the name that works, and
    'segnet_v3' did not point at 'segnet_v2'; a name close to none gets no guess."""
    bundled = tmp_path / "res" / "Models"
    bundled.mkdir(parents=True)
    monkeypatch.setenv("LIVERTUMORSEG_RESOURCES", str(tmp_path / "res"))
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(tmp_path / "user"))
    monkeypatch.chdir(tmp_path)
    save_model_package(bundled / "default.safetensors", _tiny_model(), PREP, metadata={"name": "default_v10",
                                                                                       "default": True})
    save_model_package(bundled / "segnet_v2.safetensors", _tiny_model(1), PREP, metadata={"name": "segnet_v2"})
    with pytest.raises(ModelPackageError, match=r"named 'defualt' \(did you mean 'default'\?\)\. Installed"):
        resolve_model("defualt")
    with pytest.raises(ModelPackageError, match=r"named 'Segnet_V3' \(did you mean 'segnet_v2'\?\)"):
        resolve_model("Segnet_V3")
    with pytest.raises(ModelPackageError) as raised:
        resolve_model("mine")
    assert "did you mean" not in str(raised.value)
    assert resolve_model("default").name == "default.safetensors"


def test_installed_models_and_resolution(tmp_path, monkeypatch):
    bundled = tmp_path / "res" / "Models"
    user = tmp_path / "user"
    bundled.mkdir(parents=True)
    user.mkdir()
    monkeypatch.setenv("LIVERTUMORSEG_RESOURCES", str(tmp_path / "res"))
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(user))
    assert list_installed_models() == []
    with pytest.raises(ModelPackageError, match="No default model"):
        resolve_model("default")
    with pytest.raises(ModelPackageError, match="No installed model named 'mine'"):
        load_model_package("mine")

    save_model_package(bundled / "liver_v1.safetensors", _tiny_model(), PREP,
                       metadata={"name": "liver-v1", "default": True, "validation": {"dice_liver": 0.9}})
    save_model_package(bundled / "other.safetensors", _tiny_model(1), PREP)
    save_model_package(user / "mine.safetensors", _tiny_model(2), PREP, metadata={"name": "my-model"})
    (user / "broken.safetensors").write_bytes(b"garbage!garbage!")

    entries = list_installed_models()
    assert [e["name"] for e in entries] == ["liver-v1", "other", "broken", "my-model"]
    assert [e["source"] for e in entries] == ["bundled", "bundled", "user", "user"]
    assert entries[0]["default"] and entries[0]["validation"] == {"dice_liver": 0.9}
    assert entries[0]["architecture"] == "unet" and entries[0]["in_channels"] == 1
    assert entries[2]["error"] and entries[3]["error"] is None
    assert entries[2]["weights_sha256"] is None and entries[3]["weights_sha256"] == weights_sha256(
        _tiny_model(2).state_dict())

    assert resolve_model("default") == bundled / "liver_v1.safetensors"
    assert resolve_model("my-model") == user / "mine.safetensors"
    assert resolve_model("mine") == user / "mine.safetensors"
    assert load_model_package("my-model").name == "my-model"
    with pytest.raises(ModelPackageError):
        resolve_model("broken")


def test_default_by_file_name(tmp_path, monkeypatch):
    bundled = tmp_path / "res" / "Models"
    bundled.mkdir(parents=True)
    monkeypatch.setenv("LIVERTUMORSEG_RESOURCES", str(tmp_path / "res"))
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(tmp_path / "none"))
    save_model_package(bundled / "a.safetensors", _tiny_model(), PREP)
    save_model_package(bundled / "default_liver.safetensors", _tiny_model(1), PREP)
    assert resolve_model("default") == bundled / "default_liver.safetensors"


def test_models_command_lists_architectures_and_installed_packages(tmp_path, monkeypatch, capsys):
    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.commands.models import dice_summary

    monkeypatch.setenv("LIVERTUMORSEG_RESOURCES", str(tmp_path / "res"))
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(tmp_path / "user"))
    (tmp_path / "user").mkdir()
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "in_channels=3" in text and "none." in text
    assert "segnet" in text and "29.47 M" in text  # SegNet at default width

    save_model_package(tmp_path / "user" / "mine.safetensors", _tiny_model(), PREP,
                       metadata={"name": "my-liver", "validation": {"dice_liver": 0.95, "dice_tumor": 0.6125,
                                                                    "assd_mm": 1.5}})
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    line = next(l for l in text.splitlines() if "my-liver" in l)
    assert "unet" in line and "dice_liver=0.950 dice_tumor=0.613" in line and "mine.safetensors" in line

    assert main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in data["architectures"]}
    assert set(rows) == {"alexnet_fcn", "attention_unet", "dalunet", "resnet18_fcn", "resnet34_fcn",
                         "resnet50_fcn", "segnet", "unet"}
    assert rows["unet"]["parameters"] == sum(p.numel() for p in build_model("unet", 3, 3).parameters())
    assert rows["resnet50_fcn"]["size_multiple"] == 32
    assert [e["name"] for e in data["installed"]] == ["my-liver"]
    # the hash a segment report's model_weights_sha256 gives (over the tensors, not the file), so a report can be
    # matched to an installed package
    assert data["installed"][0]["weights_sha256"] == weights_sha256(_tiny_model().state_dict())
    assert data["bundled_models_dir_exists"] is False  # res/Models is missing here: the JSON says so, as the text
    (tmp_path / "res" / "Models").mkdir(parents=True)
    assert main(["models", "--json"]) == 0 and json.loads(capsys.readouterr().out)["bundled_models_dir_exists"]
    assert dice_summary({"dice": 0.5, "hd95": 3.0, "ok": True}) == "dice=0.500"
    assert dice_summary({}) == "-"
    # the slice-level number and the whole-volume one (what crossval and evaluate give) differ: both are named
    assert dice_summary({"liver_dice": 0.262, "whole_volume": {"liver_dice": 0.286}}) == \
        "whole-volume liver_dice=0.286; slice-level liver_dice=0.262"
    # the whole-volume tumor Dice, when a validation case has a reference tumor (without one it says only whether
    # tumor was predicted)
    whole = {"liver_dice": 0.9, "tumor_dice": 0.55, "cases": [{"reference_has_tumor": True}]}
    assert dice_summary({"tumor_dice": 0.7, "whole_volume": whole}) == \
        "whole-volume liver_dice=0.900 tumor_dice=0.550; slice-level tumor_dice=0.700"
    whole["cases"] = [{"reference_has_tumor": False}]
    assert dice_summary({"tumor_dice": 0.7, "whole_volume": whole}) == \
        "whole-volume liver_dice=0.900; slice-level tumor_dice=0.700"
    # validated on synthetic tumors (no validation case had one): said, as the bundled packages' keys say it; the
    # slice-level 'tumor_dice=0.000' of README's from-scratch example read as a real tumor's
    assert dice_summary({"tumor_dice": 0.0, "synthetic_lesions_in_validation": True, "whole_volume": whole}) == \
        "whole-volume liver_dice=0.900; slice-level tumor_dice_synthetic=0.000"


def test_models_command_says_when_a_packages_validation_is_not_held_out(tmp_path, monkeypatch, capsys):
    """A package fine-tuned from one trained on its validation patients, or one whose run chose its weights on its
    validation cases, was listed by 'models' with its Dice alone, beside held-out ones; train's done: line and
    crossval's table said so. The listing now says it under the package's line."""
    from LiverTumorSegLib.cli import main

    monkeypatch.setenv("LIVERTUMORSEG_RESOURCES", str(tmp_path / "res"))
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(tmp_path / "user"))
    (tmp_path / "user").mkdir()
    whole = {"liver_dice": 0.993, "tumor_dice": 1.0, "cases": [{"reference_has_tumor": False}]}
    packages = {"tuned": {"whole_volume": whole, "init_trained_on_validation_patients": ["p07"]},
                "best": {"whole_volume": whole, "optimistic": True,
                         "decided_on_validation": ["packaged weights: the best validation epoch (1 of 2)"]},
                "plain": {"whole_volume": whole, "optimistic": False, "note": "some other note"}}
    for name, validation in packages.items():
        save_model_package(tmp_path / "user" / f"{name}.safetensors", _tiny_model(), PREP,
                           metadata={"name": name, "validation": validation})
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()

    def notes_of(name):
        at = next(i for i, line in enumerate(lines) if line.startswith(f"  {name} "))
        notes = []
        for line in lines[at + 1:]:
            if not line.startswith("      note: "):
                break
            notes.append(line)
        return [n for n in notes if n.startswith("      note: validation")]  # not the tiny model's channel note

    assert notes_of("tuned") == ["      note: validation not held out: the --init-from package was trained on "
                                 "validation patient(s) p07"]
    assert notes_of("best") == ["      note: validation selected on these validation cases (optimistic): packaged "
                                "weights: the best validation epoch (1 of 2)"]
    assert notes_of("plain") == []


def test_weights_sha256_known_answer():
    import hashlib
    expected = hashlib.sha256(b"a\0F32\0[1]\0" + struct.pack("<f", 1.0)
                              + b"b\0I64\0[2,1]\0" + struct.pack("<qq", 3, -4)).hexdigest()
    tensors = {"b": torch.tensor([[3], [-4]], dtype=torch.int64), "a": torch.tensor([1.0])}
    assert weights_sha256(tensors) == expected
    assert len(weights_sha256({"h": torch.ones(3, dtype=torch.bfloat16)})) == 64


def test_deep_supervision_model_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_model("dalunet", 3, 3, channels=(4, 8), num_slices=3).eval()
    path = save_model_package(tmp_path / "dalu.safetensors", model, PREP, metadata={"name": "dalu"})
    package = load_model_package(path)
    x = torch.rand(1, 3, 20, 18)
    with torch.no_grad():
        out = package.model(x)
        assert isinstance(out, torch.Tensor) and torch.equal(out, model(x))
    assert package.architecture["options"]["num_slices"] == 3


def test_header_length_bytes_that_look_like_pickle_magic_are_accepted(tmp_path):
    """A header length whose low byte is 0x80 (pickle magic) or low bytes 'PK' (zip) is still valid."""
    from safetensors.torch import save_file
    def header_length(path, pad):
        save_file({"w": torch.zeros(2)}, str(path), metadata={"livertumorseg": "x" * pad})
        return struct.unpack("<Q", path.read_bytes()[:8])[0]

    for low, mask in ((0x80, 0xFF), (0x4B50, 0xFFFF)):
        path = tmp_path / f"pad{low}.safetensors"
        n0 = header_length(path, 0)
        target = n0 + ((low - n0) % (mask + 1))  # smallest length >= n0 with these low bytes
        pad = target - n0
        while header_length(path, pad) < target:  # the header grows one byte per metadata character
            pad += 1
        assert header_length(path, pad) & mask == low
        header = read_safetensors_header(path)  # must not be mistaken for a pickle
        assert "w" in header


# ---------------------------------------------------------------------------------------------------
# float16 weight storage (issue 11: packages of <= 20 MB)

def test_float16_storage_halves_the_file_and_round_trips_within_half_precision(tmp_path):
    model = _tiny_model(3).eval()
    full = save_model_package(tmp_path / "f32.safetensors", model, PREP)
    half = save_model_package(tmp_path / "f16.safetensors", model, PREP, weights_storage="float16")
    header = read_safetensors_header(half)
    stored = {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    assert "F16" in stored and "F32" not in stored          # every float32 weight is stored as float16
    assert read_package_metadata(half)["weights_storage"] == "float16"
    assert read_package_metadata(full)["weights_storage"] == "float32"
    weight_bytes = lambda p: p.stat().st_size - 8 - struct.unpack("<Q", p.read_bytes()[:8])[0]  # noqa: E731
    assert weight_bytes(half) < 0.52 * weight_bytes(full)
    loaded = load_model_package(half)
    for name, tensor in loaded.model.state_dict().items():   # back to the network's float32 ...
        original = model.state_dict()[name]
        assert tensor.dtype == original.dtype
        if tensor.is_floating_point():                        # ... each weight within float16 rounding
            assert torch.allclose(tensor, original, rtol=2 ** -10, atol=6e-8), name
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        a, b = model(x), loaded.model(x)
    assert (a.argmax(1) == b.argmax(1)).float().mean() > 0.99
    assert torch.allclose(a, b, atol=5e-3 * float(a.abs().max()))


def test_float16_package_resaved_as_float16_keeps_its_hash(tmp_path):
    half = save_model_package(tmp_path / "f16.safetensors", _tiny_model(4), PREP, weights_storage="float16")
    first = load_model_package(half)
    again = save_model_package(tmp_path / "again.safetensors", first.model, PREP, weights_storage="float16")
    assert read_package_metadata(again)["weights_sha256"] == first.sha256  # float16 -> float32 -> float16 is exact


def test_float16_storage_refuses_weights_outside_its_range(tmp_path):
    model = _tiny_model(5)
    with torch.no_grad():
        next(p for p in model.parameters() if p.dim() > 1).view(-1)[0] = 1e6
    with pytest.raises(InputError, match="outside float16's range"):
        save_model_package(tmp_path / "big.safetensors", model, PREP, weights_storage="float16")
    assert not (tmp_path / "big.safetensors").exists()
    with pytest.raises(InputError, match="weights_storage must be one of"):
        save_model_package(tmp_path / "x.safetensors", _tiny_model(), PREP, weights_storage="int8")


def test_float16_storage_flag_and_dtypes_must_agree(tmp_path):
    half = save_model_package(tmp_path / "f16.safetensors", _tiny_model(6), PREP, weights_storage="float16")
    full = save_model_package(tmp_path / "f32.safetensors", _tiny_model(6), PREP)
    # float16 tensors in a package whose metadata says float32: refused before any weight is read
    lying = _rewrite_metadata(half, tmp_path / "lying.safetensors", lambda m: m.update(weights_storage="float32"))
    with pytest.raises(ModelPackageError, match="another type than the network's"):
        load_model_package(lying)
    # float32 tensors claimed to be float16
    claimed = _rewrite_metadata(full, tmp_path / "claimed.safetensors", lambda m: m.update(weights_storage="float16"))
    with pytest.raises(ModelPackageError, match="another type than the network's"):
        load_model_package(claimed)
    bogus = _rewrite_metadata(full, tmp_path / "bogus.safetensors", lambda m: m.update(weights_storage="int4"))
    with pytest.raises(ModelPackageError, match="weights_storage"):
        load_model_package(bogus)
    # a float16 package with one weight flipped fails its integrity check like a float32 one
    from safetensors.torch import load_file, save_file
    tensors = load_file(str(half))
    name = next(k for k, v in tensors.items() if v.dtype == torch.float16)
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += 1.0
    header = read_safetensors_header(half)["__metadata__"]
    save_file(tensors, str(tmp_path / "tampered.safetensors"), metadata=header)
    with pytest.raises(ModelPackageError, match="integrity check"):
        load_model_package(tmp_path / "tampered.safetensors")


# ---------------------------------------------------------------------------------------------------
# the activation estimate is cached per architecture (plan_cache.py)

def _count_probes(monkeypatch):
    import LiverTumorSegLib.package as package_module
    calls = []
    real = package_module._activation_bytes

    def counting(net, in_channels):
        calls.append(in_channels)
        return real(net, in_channels)
    monkeypatch.setattr(package_module, "_activation_bytes", counting)
    return calls


def test_activation_estimate_is_computed_once_per_architecture(tmp_path, monkeypatch):
    monkeypatch.setenv("LIVERTUMORSEG_CACHE_DIR", str(tmp_path / "cache"))
    calls = _count_probes(monkeypatch)
    a = save_model_package(tmp_path / "a.safetensors", _tiny_model(1), PREP)
    b = save_model_package(tmp_path / "b.safetensors", _tiny_model(2), PREP)   # same architecture, other weights
    first = load_model_package(a)
    second = load_model_package(b)
    assert len(calls) == 1                                             # the second load used the cache
    assert second.activation_bytes_per_pixel == first.activation_bytes_per_pixel > 0
    other = build_model("unet", in_channels=1, num_classes=3, channels=(4, 8, 16), num_res_units=1)
    load_model_package(save_model_package(tmp_path / "c.safetensors", other, PREP))
    assert len(calls) == 2                                             # other options: another key


def test_a_quoted_tilde_in_the_cache_folder_is_the_home_folder(tmp_path, monkeypatch):
    """export LIVERTUMORSEG_CACHE_DIR="~/cache" (quoted, so the shell leaves the '~') made every package load create
    a folder literally named '~' in the working folder; LIVERTUMORSEG_MODELS_DIR expands it."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("LIVERTUMORSEG_CACHE_DIR", "~/cache")
    monkeypatch.chdir(work)
    load_model_package(save_model_package(tmp_path / "a.safetensors", _tiny_model(), PREP))
    assert (home / "cache" / "activation_bytes.json").is_file()
    assert not (work / "~").exists()


@pytest.mark.skipif(os.name != "posix", reason="the passwd database")
def test_a_tilde_where_there_is_no_home_folder_is_named_and_the_plan_cache_skipped(tmp_path, monkeypatch):
    """Without HOME and without a passwd entry (docker run --user N), Path.expanduser raised "RuntimeError: Could not
    determine home directory.": LIVERTUMORSEG_CACHE_DIR='~/cache' refused every package as "its network cannot
    process 1-channel slices (RuntimeError ...)", LIVERTUMORSEG_MODELS_DIR='~/models' and 'segment ~/ct.nii.gz'
    were internal errors, and so was '~name/ct.nii.gz' of a user with no account, with any home. The plan cache is
    now skipped, as an unusable cache is, and the paths are refused naming the '~' and what to write instead."""
    import pwd
    import re

    from LiverTumorSegLib import fileutil, resources

    def no_entry(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(InputError, match=re.escape("'~no_such_user_4711' begins with '~no_such_user_4711', the home "
                                                   "folder of user 'no_such_user_4711', who has no account")):
        fileutil.check_can_write("~no_such_user_4711/seg.nii.gz")
    monkeypatch.delenv("HOME")
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    monkeypatch.setenv("LIVERTUMORSEG_CACHE_DIR", "~/cache")
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", "~/models")
    monkeypatch.chdir(tmp_path)
    package = load_model_package(save_model_package(tmp_path / "a.safetensors", _tiny_model(), PREP))
    assert package.activation_bytes_per_pixel > 0 and not (tmp_path / "~").exists()
    no_home = "begins with '~', the home folder, but this process has none (HOME is not set"
    with pytest.raises(InputError, match=re.escape(f"'~/models' {no_home}")):
        resources.user_models_dir()
    with pytest.raises(InputError, match=re.escape(f"'~' {no_home}")):
        fileutil.check_can_write("~/seg.nii.gz")


def test_activation_cache_key_changes_when_the_model_source_changes(tmp_path, monkeypatch):
    """The key held the library version, which stays 0.1.0 between commits of a clone: an edited layer kept the
    estimate of the old code."""
    from LiverTumorSegLib import plan_cache
    arch = {"name": "unet", "channels": [4, 8]}
    monkeypatch.setattr(plan_cache, "_MODELS_SOURCE_HASH", None)
    before = plan_cache.plan_key(arch, 64)
    assert plan_cache.plan_key(arch, 64) == before                     # stable within one source
    models = tmp_path / "LiverTumorSegLib" / "models"
    models.mkdir(parents=True)
    for path in (Path(plan_cache.__file__).parent / "models").glob("*.py"):
        (models / path.name).write_bytes(path.read_bytes())
    (models / "unet.py").write_text((models / "unet.py").read_text() + "\n# an edited layer\n")
    monkeypatch.setattr(plan_cache, "__file__", str(models.parent / "plan_cache.py"))
    monkeypatch.setattr(plan_cache, "_MODELS_SOURCE_HASH", None)
    assert plan_cache.plan_key(arch, 64) != before


def test_activation_cache_that_is_corrupt_or_unwritable_changes_nothing(tmp_path, monkeypatch):
    from LiverTumorSegLib import plan_cache
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / plan_cache.CACHE_FILE).write_text("{not json")
    monkeypatch.setenv("LIVERTUMORSEG_CACHE_DIR", str(cache))
    calls = _count_probes(monkeypatch)
    path = save_model_package(tmp_path / "a.safetensors", _tiny_model(1), PREP)
    expected = load_model_package(path).activation_bytes_per_pixel
    assert len(calls) == 1 and json.loads((cache / plan_cache.CACHE_FILE).read_text())  # rewritten as JSON
    # a value of the wrong type in the file is ignored, not trusted
    key = next(iter(json.loads((cache / plan_cache.CACHE_FILE).read_text())))
    (cache / plan_cache.CACHE_FILE).write_text(json.dumps({key: "1"}))
    assert load_model_package(path).activation_bytes_per_pixel == expected and len(calls) == 2
    # a cache folder that cannot be created (a file is in the way): loading still works
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    monkeypatch.setenv("LIVERTUMORSEG_CACHE_DIR", str(blocker / "cache"))
    assert load_model_package(path).activation_bytes_per_pixel == expected


def test_cached_activation_estimate_is_still_held_to_the_limit(tmp_path, monkeypatch):
    import LiverTumorSegLib.package as package_module
    monkeypatch.setenv("LIVERTUMORSEG_CACHE_DIR", str(tmp_path / "cache"))
    path = save_model_package(tmp_path / "a.safetensors", _tiny_model(1), PREP)
    load_model_package(path)                                          # fills the cache
    monkeypatch.setattr(package_module, "MAX_ACTIVATION_BYTES", 1024)
    with pytest.raises(ModelPackageError, match="layer outputs for one 256 x 256 slice take"):
        load_model_package(path)


def test_a_name_shared_by_two_installed_packages_is_refused_not_picked(package_path, tmp_path, monkeypatch):
    # a user file named like a bundled model was ignored without a word: --model segnet_v2 ran the bundled one
    from LiverTumorSegLib.package import resolve_model

    models = tmp_path / "user_models"
    models.mkdir()
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(models))
    bundled = resolve_model("segnet_v2")
    (models / "segnet_v2.safetensors").write_bytes(package_path.read_bytes())
    with pytest.raises(ModelPackageError, match="matches 2 installed packages") as refused:
        resolve_model("segnet_v2")
    # same file names: each by its path (the stem matches both)
    assert f"give one of them: --model {bundled} or --model {models / 'segnet_v2.safetensors'}" in str(refused.value)
    assert resolve_model(str(bundled)) == bundled                     # a path still says which one
    # two user packages of one metadata name in files of other names: 'rename one' was the advice, and renaming a
    # file changed nothing; each file name reaches its package (the package audit)
    (models / "segnet_v2.safetensors").unlink()
    first = save_model_package(models / "mine a.safetensors", _tiny_model(1), PREP, metadata={"name": "Leber"})
    second = save_model_package(models / "mine b.safetensors", _tiny_model(2), PREP, metadata={"name": "Leber"})
    with pytest.raises(ModelPackageError, match=r"matches 2 installed packages .*give one of them: "
                                                r"--model 'mine a' or --model 'mine b'$"):
        resolve_model("Leber")
    assert (resolve_model("mine a"), resolve_model("mine b")) == (first, second)
    # a stem that another package's name matches too, or 'default' (the bundled default's name), is no way to one
    # of them: its path is offered (the review: '--model segnet_v2' was offered and refused again)
    (models / "mine b.safetensors").rename(models / "default.safetensors")
    (models / "mine a.safetensors").rename(models / "segnet_v2_mine.safetensors")
    save_model_package(models / "x.safetensors", _tiny_model(3), PREP, metadata={"name": "segnet_v2_mine"})
    with pytest.raises(ModelPackageError, match="matches 2 installed packages") as refused:
        resolve_model("Leber")
    assert str(refused.value).endswith(f"give one of them: --model {models / 'segnet_v2_mine.safetensors'} or "
                                       f"--model {models / 'default.safetensors'}") or \
        str(refused.value).endswith(f"give one of them: --model {models / 'default.safetensors'} or "
                                    f"--model {models / 'segnet_v2_mine.safetensors'}")


def test_a_model_name_given_in_decomposed_unicode_finds_its_package(tmp_path, monkeypatch):
    """'Leber Modell ü 1' typed (or stored, as macOS file names are) with 'u' and a combining diaeresis was 'No
    installed model named ... (did you mean ...?)' naming the same-looking name (the package audit)."""
    import unicodedata

    from LiverTumorSegLib.package import resolve_model

    models = tmp_path / "user_models"
    models.mkdir()
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(models))
    path = save_model_package(models / "leber.safetensors", _tiny_model(1), PREP, metadata={"name": "Leber Modell ü 1"})
    decomposed = unicodedata.normalize("NFD", "Leber Modell ü 1")
    assert decomposed != "Leber Modell ü 1"
    assert resolve_model(decomposed) == path == resolve_model("Leber Modell ü 1")
    stem = save_model_package(models / unicodedata.normalize("NFD", "größe.safetensors"), _tiny_model(2), PREP)
    assert resolve_model("größe") == stem  # a decomposed file stem, the composed name typed


def test_metadata_with_non_finite_or_huge_numbers_is_refused_as_a_package_error(tmp_path):
    """An audit's hand-made metadata with NaN (and a recomputed metadata hash) crashed loading with an internal
    ValueError; 10**400 in the validation crashed 'models' with an OverflowError; NaN got into 'models --json'
    as invalid JSON. Such metadata is now a ModelPackageError wherever it is read; save_model_package refuses
    non-finite numbers where the network computes with them."""
    import json as json_module
    import struct

    from LiverTumorSegLib.errors import InputError, ModelPackageError
    from LiverTumorSegLib.package import METADATA_KEY, read_package_metadata, save_model_package

    good = save_model_package(tmp_path / "good.safetensors", _tiny_model(), PREP)
    raw = good.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json_module.loads(raw[8:8 + n])
    for name, number in (("nan", "NaN"), ("inf", "1e999"), ("huge", "1" + "0" * 400)):
        meta_text = header["__metadata__"][METADATA_KEY].replace('"validation": {}', f'"validation": {{"dice_liver": '
                                                                                     f'{number}}}')
        assert meta_text != header["__metadata__"][METADATA_KEY]
        edited = dict(header, __metadata__=dict(header["__metadata__"], **{METADATA_KEY: meta_text}))
        text = json_module.dumps(edited).encode()
        text += b" " * (-len(text) % 8)
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])
        with pytest.raises(ModelPackageError, match="corrupt metadata JSON .*(allows|out of range)"):
            read_package_metadata(path)
    bad = _as_dict(PREP)
    bad["channels"] = [dict(bad["channels"][0], level=float("nan"))] + list(bad["channels"][1:])
    with pytest.raises(InputError, match="(preprocessing holds a non-finite number|level)"):
        save_model_package(tmp_path / "nan_window.safetensors", _tiny_model(), bad)
    assert not (tmp_path / "nan_window.safetensors").exists()


def test_a_symbolic_link_in_the_bundled_folder_counts_as_bundled(tmp_path, monkeypatch):
    """A link placed in the bundled folder pointing at an edited file elsewhere was resolved first, so the file
    was not 'bundled' and skipped SHA256SUMS."""
    from LiverTumorSegLib import package as package_module
    bundled = tmp_path / "Models"
    bundled.mkdir()
    monkeypatch.setattr(package_module, "bundled_models_dir", lambda: bundled)
    outside = tmp_path / "elsewhere.safetensors"
    outside.write_bytes(b"x")
    link = bundled / "segnet_v2.safetensors"
    link.symlink_to(outside)
    assert package_module._in_bundled_folder(link) and not package_module._in_bundled_folder(outside)


def test_a_package_dropped_into_the_bundled_folder_unlisted_loads_with_a_warning(package_path, tmp_path, monkeypatch,
                                                                                  caplog):
    """SHA256SUMS vouches for the release's packages; a file placed there by hand, not in the list, loaded
    without a word (a stop-31 known limit). It still loads (its own hashes are checked) but says so, once."""
    import logging
    import shutil

    from LiverTumorSegLib import package as package_module

    monkeypatch.setenv("LIVERTUMORSEG_RESOURCES", str(tmp_path / "res"))
    models = tmp_path / "res" / "Models"
    models.mkdir(parents=True)
    save_model_package(models / "listed.safetensors", _tiny_model(), PREP)
    shutil.copy(models / "listed.safetensors", models / "dropped.safetensors")
    monkeypatch.setattr(package_module, "_UNLISTED_WARNED", set())
    with caplog.at_level(logging.WARNING, logger="LiverTumorSegLib.package"):
        load_model_package(models / "listed.safetensors")
        assert "does not list it" not in caplog.text
        load_model_package(models / "dropped.safetensors")
        load_model_package(models / "dropped.safetensors")
    assert caplog.text.count("does not list it") == 1
    assert "dropped.safetensors" in caplog.text and "user model folder" in caplog.text


def test_a_bundled_folder_without_its_checksum_list_is_warned_about(tmp_path, monkeypatch, caplog):
    """A deleted SHA256SUMS switched the whole-file check off for every bundled package without a word (a stop-34
    known limit): an edited window level in the default would then run silently."""
    import logging

    from LiverTumorSegLib import package as package_module

    monkeypatch.setenv("LIVERTUMORSEG_RESOURCES", str(tmp_path / "res"))
    models = tmp_path / "res" / "Models"
    models.mkdir(parents=True)
    save_model_package(models / "default.safetensors", _tiny_model(), PREP)
    (models / package_module.BUNDLED_CHECKSUMS).unlink()
    monkeypatch.setattr(package_module, "_UNLISTED_WARNED", set())
    with caplog.at_level(logging.WARNING, logger="LiverTumorSegLib.package"):
        load_model_package(models / "default.safetensors")
        load_model_package(models / "default.safetensors")
    assert caplog.text.count("has no SHA256SUMS") == 1 and "default.safetensors" in caplog.text


def test_defaults_and_folders_as_the_listing_and_lookup_see_them(tmp_path, monkeypatch):
    """An audit's reproductions: a re-saved default in the user folder was listed '(default)' too; two bundled
    packages flagged default made --model default take the first by file name without a word; a user folder
    equal to the bundled one listed every package twice and refused every name; '~' in the folder variables
    was read as a folder named '~'."""
    from LiverTumorSegLib import resources
    from LiverTumorSegLib.package import list_installed_models, resolve_model
    bundled = tmp_path / "res" / "Models"
    bundled.mkdir(parents=True)
    monkeypatch.setenv("LIVERTUMORSEG_RESOURCES", str(tmp_path / "res"))
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(tmp_path / "user"))
    (tmp_path / "user").mkdir()
    save_model_package(bundled / "default.safetensors", _tiny_model(), PREP, {"name": "default", "default": True})
    save_model_package(bundled / "segnet_v2.safetensors", _tiny_model(1), PREP, {"name": "segnet_v2"})
    save_model_package(tmp_path / "user" / "mine.safetensors", _tiny_model(2), PREP,
                       {"name": "my_retrained", "default": True})
    flagged = [e["name"] for e in list_installed_models() if e["default"]]
    assert flagged == ["default"] and resolve_model("default") == bundled / "default.safetensors"
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(tmp_path / "res" / ".." / "res" / "Models"))
    assert len(list_installed_models()) == 2 and resolve_model("segnet_v2") == bundled / "segnet_v2.safetensors"
    save_model_package(bundled / "default_v4.safetensors", _tiny_model(3), PREP, {"name": "default_v4",
                                                                                  "default": True})
    with pytest.raises(ModelPackageError, match="2 bundled packages are flagged as the default"):
        resolve_model("default")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", "~/user")
    monkeypatch.setenv("LIVERTUMORSEG_RESOURCES", "~/res")
    assert resources.user_models_dir() == tmp_path / "user" and resources.resources_dir() == tmp_path / "res"


def test_a_package_written_beside_a_checksum_list_updates_it(tmp_path, monkeypatch):
    """A finalize script writing into a clone's Resources/Models while LIVERTUMORSEG_RESOURCES pointed elsewhere
    left that folder's SHA256SUMS stale: every later load from it failed its integrity check."""
    from LiverTumorSegLib import package as package_module
    monkeypatch.setenv("LIVERTUMORSEG_RESOURCES", str(tmp_path / "elsewhere"))
    clone = tmp_path / "clone" / "Resources" / "Models"
    clone.mkdir(parents=True)
    save_model_package(clone / "segnet_v2.safetensors", _tiny_model(), PREP, {"name": "segnet_v2"})
    listing = clone / package_module.BUNDLED_CHECKSUMS
    listing.write_text(f"{'0' * 64}  segnet_v2.safetensors\n")            # the release's, before the rewrite
    save_model_package(clone / "segnet_v2.safetensors", _tiny_model(1), PREP, {"name": "segnet_v2"},
                       overwrite=True)
    assert listing.read_text().split()[0] == package_module.file_sha256(clone / "segnet_v2.safetensors")
    monkeypatch.setenv("LIVERTUMORSEG_RESOURCES", str(tmp_path / "clone" / "Resources"))
    load_model_package(clone / "segnet_v2.safetensors")                     # passes the whole-file check
    plain = tmp_path / "plain"
    plain.mkdir()
    save_model_package(plain / "x.safetensors", _tiny_model(), PREP)
    assert not (plain / package_module.BUNDLED_CHECKSUMS).exists()          # no list is made where none was


def test_a_clone_s_checksum_list_keeps_its_other_lines_when_a_package_is_saved_there(tmp_path, monkeypatch):
    """Saving a package into a Resources/Models folder holding a SHA256SUMS rewrote that list sorted in one form: its
    'sha256sum --tag' line became 'sha256  (notes.txt) = ...', which 'sha256sum -c' calls improperly formatted, and
    its comment and '*' marks were changed."""
    monkeypatch.setenv("LIVERTUMORSEG_RESOURCES", str(tmp_path / "elsewhere"))
    folder = tmp_path / "clone" / "Resources" / "Models"
    folder.mkdir(parents=True)
    other = "9" * 64
    listing = folder / "SHA256SUMS"
    lines = [f"SHA256 (notes.txt) = {other}", "# release 1.2", f"{other} *notes.txt", f"{'0' * 64}  x.safetensors",
             f"{other}  zeta.txt"]
    listing.write_text("\n".join(lines) + "\n")
    package = save_model_package(folder / "x.safetensors", _tiny_model(), PREP, overwrite=True)
    save_model_package(folder / "new.safetensors", _tiny_model(1), PREP)
    from LiverTumorSegLib.package import file_sha256
    assert listing.read_text().splitlines() == lines[:3] + [f"{file_sha256(package)}  x.safetensors", lines[4],
                                                            f"{file_sha256(folder / 'new.safetensors')}  new.safetensors"]


def test_a_publishers_checksum_list_beside_a_download_is_left_as_it_is(tmp_path, monkeypatch, caplog):
    """Rewriting a downloaded package (set_package_min_lesion_probability, or a re-save) rewrote the publisher's
    SHA256SUMS beside it, so 'sha256sum -c' vouched for the changed file (the package audit). The list is left as it
    is, with a warning naming it."""
    import logging

    from LiverTumorSegLib.package import file_sha256, set_package_min_lesion_probability

    monkeypatch.setenv("LIVERTUMORSEG_RESOURCES", str(tmp_path / "elsewhere"))
    folder = tmp_path / "downloads"
    folder.mkdir()
    package = save_model_package(folder / "clinic.safetensors", _tiny_model(), PREP)
    listing = folder / "SHA256SUMS"
    published = f"{file_sha256(package)}  clinic.safetensors\n"
    listing.write_text(published)
    with caplog.at_level(logging.WARNING, logger="LiverTumorSegLib.package"):
        set_package_min_lesion_probability(package, 0.8)
    assert listing.read_text() == published and file_sha256(package) != published.split()[0]
    assert "no longer matches its line in" in caplog.text and "SHA256SUMS" in caplog.text
    caplog.clear()
    listing.write_text(f"{file_sha256(package)}  clinic.safetensors\n")  # the list matches: nothing to say
    from LiverTumorSegLib.package import record_bundled_checksum
    with caplog.at_level(logging.WARNING, logger="LiverTumorSegLib.package"):
        record_bundled_checksum(package)
    assert "no longer matches" not in caplog.text


def test_a_link_from_the_user_folder_to_a_bundled_package_is_checked_and_listed_under_the_targets_name(
        tmp_path, monkeypatch):
    """A link in the user folder to a bundled package was looked up in SHA256SUMS under the link's name: called an
    unlisted bundled file (its release check skipped), and a rewrite through it listed 'mysegnet.safetensors', a
    file the bundled folder does not hold (the package audit)."""
    from LiverTumorSegLib import package as package_module
    from LiverTumorSegLib.package import file_sha256, set_package_min_lesion_probability

    models = tmp_path / "res" / "Models"
    models.mkdir(parents=True)
    monkeypatch.setenv("LIVERTUMORSEG_RESOURCES", str(tmp_path / "res"))
    bundled = save_model_package(models / "segnet_v2.safetensors", _tiny_model(), PREP, {"name": "segnet_v2"})
    user = tmp_path / "user"
    user.mkdir()
    link = user / "mysegnet.safetensors"
    link.symlink_to(bundled)
    assert package_module._bundled_name(link) == "segnet_v2.safetensors"
    listing = models / package_module.BUNDLED_CHECKSUMS
    assert listing.read_text().split() == [file_sha256(bundled), "segnet_v2.safetensors"]
    bundled.write_bytes(bundled.read_bytes()[:-1] + b" ")  # damaged: the release check through the link sees it
    with pytest.raises(ModelPackageError, match="failed its integrity check.*Resources/Models/segnet_v2"):
        load_model_package(link)
    save_model_package(models / "segnet_v2.safetensors", _tiny_model(), PREP, {"name": "segnet_v2"}, overwrite=True)
    set_package_min_lesion_probability(link, 0.7)
    assert listing.read_text().split() == [file_sha256(bundled), "segnet_v2.safetensors"]  # no line for the link
    load_model_package(link)


def test_any_64_bit_integer_in_metadata_is_read():
    """A training seed may be a 64-bit value; the integer bound refused it (the package could not be read)."""
    from LiverTumorSegLib.package import _bounded_int
    assert _bounded_int(str(2 ** 64 - 1)) == 2 ** 64 - 1 and _bounded_int("-9223372036854775808") == -2 ** 63
    with pytest.raises(ValueError, match="out of range"):
        _bounded_int("1" + "0" * 30)


@pytest.mark.parametrize("metadata, named", [
    ({"description": "x" * 70_000}, "'description' must be a text of at most"),
    ({"training": {"seed": 2 ** 70}}, "integer"),
    ({"labels": {str(i): f"class {i}" for i in range(40)}}, "'labels' must map class numbers"),
    ({"deep": json.loads("[" * 40 + "]" * 40)}, "nested more than"),
    ({"default": "yes"}, "'default' must be true or false"),
], ids=["long description", "huge integer", "40 labels", "deep nesting", "default not bool"])
def test_save_refuses_metadata_that_loading_would_refuse(tmp_path, metadata, named):
    """Each of these saved without a word and then never loaded: a training run could end holding a package
    nobody can open. Saving now runs the loader's checks and writes nothing."""
    target = tmp_path / "model.safetensors"
    with pytest.raises(InputError, match=f"Not saved: loading would refuse.*{named}"):
        save_model_package(target, _tiny_model(), PREP, metadata=metadata)
    assert list(tmp_path.iterdir()) == []


def test_metadata_just_over_its_limit_is_said_to_be_over_it(package_path, tmp_path):
    """Metadata one character over the 4 MiB limit was refused as '4.0 MiB of metadata (at most 4 MiB)': a size
    that read as within the limit. The count is now exact, on loading and on saving."""
    from LiverTumorSegLib.package import MAX_METADATA_BYTES

    over = MAX_METADATA_BYTES + 1
    bad = _with_header(package_path, tmp_path / "big_metadata.safetensors",
                       lambda h: h["__metadata__"].update(livertumorseg=" " * over))
    with pytest.raises(ModelPackageError) as refused:
        load_model_package(bad)
    assert f"has {over:,} characters of metadata (at most {MAX_METADATA_BYTES:,}: 4 MiB)" in str(refused.value)
    assert "obtain a fresh copy" in str(refused.value)
    target = tmp_path / "history.safetensors"
    with pytest.raises(InputError, match=r"Not saved: loading would refuse this package: .* has [\d,]+ characters of "
                                         r"metadata \(at most 4,194,304: 4 MiB\)"):
        save_model_package(target, _tiny_model(), PREP, metadata={"training": {"loss": [0.123456789] * 400_000}})
    assert not target.exists()


def test_a_damaged_user_package_named_like_a_bundled_one_is_refused_not_replaced(tmp_path, monkeypatch):
    """A truncated user package 'other' gave a warning and then the *bundled* 'other' ran (exit 0): the user
    believed their model segmented. An intact copy of the same name is refused as ambiguous; so is this now."""
    bundled, user = tmp_path / "res" / "Models", tmp_path / "user"
    bundled.mkdir(parents=True)
    user.mkdir()
    monkeypatch.setenv("LIVERTUMORSEG_RESOURCES", str(tmp_path / "res"))
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(user))
    save_model_package(bundled / "other.safetensors", _tiny_model(1), PREP)
    data = (bundled / "other.safetensors").read_bytes()
    (user / "other.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelPackageError, match=r"user.other\.safetensors' named 'other' cannot be used"):
        resolve_model("other")


def test_a_path_object_is_a_file_at_inference_too(tmp_path, monkeypatch):
    """engine.load_package turned Path('default') into the text 'default', which names the bundled model:
    load_model_package(Path('default')) read the file ./default, the engine another model."""
    from LiverTumorSegLib.inference.engine import load_package

    monkeypatch.chdir(tmp_path)
    for load in (load_model_package, load_package):
        with pytest.raises(ModelPackageError, match="does not exist"):
            load(Path("default"))


def test_without_a_home_folder_the_environment_and_a_temporary_folder_serve(tmp_path, monkeypatch):
    """Path.home() raises for a user id without a passwd entry and without HOME (docker run --user N); it was
    called even when LIVERTUMORSEG_MODELS_DIR / LIVERTUMORSEG_CACHE_DIR were set, and 'segment' failed."""
    import getpass
    import os

    from LiverTumorSegLib import plan_cache, resources
    from LiverTumorSegLib.models import monai_import

    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(tmp_path / "m"))
    monkeypatch.setenv("LIVERTUMORSEG_CACHE_DIR", str(tmp_path / "c"))
    assert resources.user_models_dir() == tmp_path / "m" and plan_cache.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("LIVERTUMORSEG_MODELS_DIR")
    monkeypatch.delenv("LIVERTUMORSEG_CACHE_DIR")
    assert "livertumorseg-home-" in str(resources.user_models_dir()) and plan_cache.cache_dir().name == "cache"

    def no_user():
        raise KeyError("getpwuid(): uid not found: 54321")

    monkeypatch.setattr(getpass, "getuser", no_user)  # MONAI's import calls it
    monkeypatch.delenv("USER", raising=False)
    monai_import.give_monai_a_user_name()
    assert os.environ["USER"].startswith("uid")


def test_a_deeply_nested_plan_cache_is_ignored(tmp_path, monkeypatch):
    """json.loads of deeply nested brackets raises RecursionError, which the reader did not catch."""
    from LiverTumorSegLib import plan_cache

    monkeypatch.setenv("LIVERTUMORSEG_CACHE_DIR", str(tmp_path))
    (tmp_path / plan_cache.CACHE_FILE).write_text("[" * 200000 + "]" * 200000)
    assert plan_cache.cached_activation_bytes("anything") is None
    (tmp_path / plan_cache.CACHE_FILE).write_text('{"k": 5}')
    assert plan_cache.cached_activation_bytes("k") == 5


def test_an_unsealed_package_loads_with_a_warning_and_save_refuses_what_loading_refuses(package_path, tmp_path,
                                                                                          caplog):
    """A package whose metadata hash was deleted (and its window edited) loaded without a word; save_model_package
    wrote packages with unknown preprocessing keys or a negative spacing that loading then refused."""
    edited = _rewrite_metadata(package_path, tmp_path / "edited.safetensors",
                               lambda meta: meta["preprocessing"].update(target_spacing_mm=2.5))
    with caplog.at_level("WARNING", logger="LiverTumorSegLib.package"):
        load_model_package(edited)
        load_model_package(edited)
    assert sum("records no metadata SHA-256" in r.getMessage() for r in caplog.records) == 1  # once per file
    for change in ({"no_such_step": True}, {"target_spacing_mm": -1.5}):
        with pytest.raises(InputError, match="Not saved: loading would refuse"):
            save_model_package(tmp_path / "bad.safetensors", _tiny_model(), dict(PREP.to_dict(), **change))
    assert not (tmp_path / "bad.safetensors").exists()


@pytest.mark.parametrize("written_by", ["0.6.17-dev", None, "", "unknown"])
def test_a_package_without_its_seal_or_a_version_that_dates_it_before_the_seal_is_refused(package_path, tmp_path,
                                                                                         written_by):
    """Only a package dated before the metadata record (0.1.0) may lack it: one with the record removed and its
    library_version deleted or made unreadable ('0.6.17-dev') loaded with the warning alone, its window edited to
    300 (the file-safety audit)."""
    def edit(meta):
        if written_by is None:
            meta.pop("library_version")
        else:
            meta["library_version"] = written_by
        meta["preprocessing"]["channels"][0]["level"] = 300.0

    edited = _rewrite_metadata(package_path, tmp_path / "edited.safetensors", edit)
    with pytest.raises(ModelPackageError, match=r"records no metadata SHA-256 and no library version that dates it "
                                                r"before that record existed"):
        load_model_package(edited)


@pytest.mark.parametrize("written_by", ["0.2.0", "0.4.0", "1.0"])
def test_a_package_of_a_version_that_seals_every_package_without_its_seal_is_refused(package_path, tmp_path,
                                                                                      written_by):
    """Since 0.2.0 every saved package records its metadata SHA-256, so one of those versions without it had the
    record removed: a window level edited from 40 to 300 with the record deleted ran with a warning only (1232 mL
    of liver and 240 mL of 'tumor' on a CT without tumor). 0.1.0 packages may lack it and still load (above)."""
    def edit(meta):
        meta["library_version"] = written_by
        meta["preprocessing"]["channels"][0]["level"] = 300.0

    edited = _rewrite_metadata(package_path, tmp_path / "edited.safetensors", edit)
    with pytest.raises(ModelPackageError, match=rf"written by LiverTumorSeg {written_by}, which records every "
                                                r"package's metadata SHA-256, but this one records none"):
        load_model_package(edited)


def test_models_verify_finds_a_flipped_weight_byte_and_names_a_shadowed_default(tmp_path, monkeypatch, capsys):
    """A user package with one weight byte flipped was listed as usable (only its header was read); a user
    package named 'default' was listed as if '--model default' reached it (it means the bundled default)."""
    from LiverTumorSegLib.cli import main

    models = tmp_path / "user_models"
    models.mkdir()
    good = save_model_package(models / "mine.safetensors", _tiny_model(), PREP, metadata={"name": "mine"})
    data = bytearray(good.read_bytes())
    data[-5] ^= 0x01                                          # inside the last tensor's bytes
    (models / "flipped.safetensors").write_bytes(bytes(data))
    save_model_package(models / "default.safetensors", _tiny_model(1), PREP, metadata={"name": "default"})
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(models))
    assert main(["models"]) == 0
    listed = capsys.readouterr().out
    assert "models --verify" in listed and "'--model default' means the bundled default" in listed
    assert main(["models", "--verify"]) == 2  # a script's check step sees the damaged package (it exited 0)
    captured = capsys.readouterr()
    verified = captured.out
    # the flipped one, and the two tiny 1-channel networks with 9-channel preprocessing that segment refuses (the
    # line counted the first only: '1 ... failed')
    assert "3 installed package(s) failed verification (1 listed as UNUSABLE, 2 noted as refused by segment and " \
           "evaluate above)" in captured.err
    assert main(["models", "--verify", "--json"]) == 2
    capsys.readouterr()
    rows = {line.split()[-1]: line for line in verified.splitlines() if line.strip().endswith(".safetensors")}
    assert rows[str(models / "flipped.safetensors")].split()[1] == "UNUSABLE" and "integrity check" in verified
    assert "UNUSABLE" not in rows[str(good)]
    # before --verify both files named 'mine' were usable, so the name was ambiguous; now only one is
    assert "refused as ambiguous" in listed and "refused as ambiguous" not in verified
    with pytest.raises(ModelPackageError, match="integrity check"):
        load_model_package(models / "flipped.safetensors")


@pytest.mark.parametrize("labels, words", [
    ({"0": "background", "1": "tumor", "2": "liver"}, "call class 1 'tumor', not the liver"),
    ({"0": "bg", "1": "a", "2": "b", "3": "vessel", "4": "spleen"}, "not 0, 1 and 2"),
    ({"0": "background", "1": "liver", "2": "spleen"}, "call class 2 'spleen'"),
])
def test_package_labels_must_mean_liver_and_tumor(tmp_path, package_path, labels, words):
    """A package whose labels said 1 = tumor, 2 = liver was saved, loaded and run; segment still wrote class 1 as
    the 'Liver' segment. Save and load refuse it now; other wording of the same meaning is fine."""
    with pytest.raises(InputError, match=words):
        save_model_package(tmp_path / "swapped.safetensors", _tiny_model(), PREP, metadata={"labels": labels})
    assert not (tmp_path / "swapped.safetensors").exists()
    edited = _rewrite_metadata(package_path, tmp_path / "edited.safetensors",
                               lambda meta: meta.__setitem__("labels", labels))
    with pytest.raises(ModelPackageError, match=words):
        load_model_package(edited)
    worded = save_model_package(tmp_path / "worded.safetensors", _tiny_model(), PREP,
                                metadata={"labels": {"0": "Background", "1": "Liver", "2": "Liver tumour"}})
    assert load_model_package(worded).labels["2"] == "Liver tumour"


def test_packages_of_a_newer_version_are_listed_as_unusable(tmp_path, monkeypatch):
    """A sealed package naming an architecture (or an option) this version cannot build, or a preprocessing setting
    it does not know, was listed as usable, also by `models --verify`, and offered in the Slicer panel, while every
    load refused it."""
    from safetensors.torch import load_file, save_file

    from LiverTumorSegLib.package import sealed_metadata_json, weights_problem

    users = tmp_path / "models"
    users.mkdir()
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(users))
    source = save_model_package(tmp_path / "src.safetensors", _tiny_model(), PREP)

    def variant(name, change):
        meta = json.loads(read_safetensors_header(source)["__metadata__"]["livertumorseg"])
        meta.pop("metadata_sha256")
        change(meta)  # as a newer version would write it, sealed with its own metadata hash
        save_file(load_file(str(source)), str(users / name),
                  metadata={"livertumorseg": sealed_metadata_json(meta), "format": "pt"})
        return users / name

    new_architecture = variant("newarch.safetensors", lambda m: m["architecture"].update(name="unet_v9"))
    new_option = variant("newoption.safetensors", lambda m: m["architecture"]["options"].update(attention_heads=4))
    # a preprocessing setting this version lacks was listed as usable too (with a note that segment refuses it)
    new_setting = variant("newsetting.safetensors", lambda m: m["preprocessing"].update(bias_field_correction=True))
    for path in (new_architecture, new_option, new_setting):
        with pytest.raises(ModelPackageError):
            load_model_package(path)
    entries = {Path(e["path"]).name: e for e in list_installed_models(warn=False)}
    assert "needs the architecture 'unet_v9'" in entries["newarch.safetensors"]["error"]
    assert "Unknown preprocessing config key(s) ['bias_field_correction']" in entries["newsetting.safetensors"]["error"]
    with pytest.raises(ModelPackageError, match="named 'newsetting' cannot be used"):
        resolve_model("newsetting")
    # option names need the architecture's module (torch), which the listing leaves to --verify and to loading
    assert entries["newoption.safetensors"]["error"] is None
    assert "unknown option(s) ['attention_heads']" in weights_problem(new_option)
    assert weights_problem(source) is None


@pytest.mark.parametrize("written_by, advice", [
    ("9.0.0", "The package was written by LiverTumorSeg 9.0.0, newer than this one ({ours}): update LiverTumorSeg "
              "to use it."),
    (None, "It records this version, {ours}, whose packages hold no such setting: it was damaged or edited; obtain "
           "a fresh copy."),
    ("0.1.0", "Update LiverTumorSeg if the package comes from a newer version (it records library_version '0.1.0'; "
              "this is {ours}); otherwise it was damaged or edited: obtain a fresh copy."),
])
def test_settings_a_newer_version_writes_are_refused_saying_what_to_do(tmp_path, written_by, advice):
    """A package recording a preprocessing key, a channel kind, an architecture option or a weight storage this
    version does not know (a newer version's package) was refused naming the setting, with nothing to do."""
    from safetensors.torch import load_file, save_file

    from LiverTumorSegLib import __version__
    from LiverTumorSegLib.package import sealed_metadata_json, weights_problem

    advice = advice.format(ours=__version__)
    source = save_model_package(tmp_path / "src.safetensors", _tiny_model(), PREP)
    changes = {
        "key": lambda m: m["preprocessing"].update(bias_field_correction=True),
        "kind": lambda m: m["preprocessing"]["channels"].__setitem__(0, {"kind": "dual_energy", "kev": 70}),
        "option": lambda m: m["architecture"]["options"].update(attention_heads=4),
        "storage": lambda m: m.update(weights_storage="int8"),
    }
    for name, change in changes.items():
        meta = json.loads(read_safetensors_header(source)["__metadata__"]["livertumorseg"])
        meta.pop("metadata_sha256")
        if written_by:
            meta["library_version"] = written_by
        change(meta)  # sealed with its own metadata hash, as that version would write it
        path = tmp_path / f"{name}.safetensors"
        save_file(load_file(str(source)), str(path),
                  metadata={"livertumorseg": sealed_metadata_json(meta), "format": "pt"})
        with pytest.raises(ModelPackageError) as refused:
            load_model_package(path)
        assert str(refused.value).endswith(advice), (name, str(refused.value))
        assert weights_problem(path).endswith(advice), name


def test_an_edited_bundled_default_is_named_and_restored_not_resaved(tmp_path, monkeypatch):
    """A sealed bundled default edited in place got the metadata-hash message ('re-save it with
    save_model_package', which in the bundled folder records the edit in SHA256SUMS and approves it) instead of
    the SHA256SUMS one; `--model default` said no default was installed and blamed a non-editable install."""
    monkeypatch.setenv("LIVERTUMORSEG_RESOURCES", str(tmp_path / "res"))
    models = tmp_path / "res" / "Models"
    models.mkdir(parents=True)
    saved = save_model_package(models / "default.safetensors", _tiny_model(), PREP, metadata={"default": True})
    assert resolve_model("default") == saved

    def window_90(meta):
        meta["preprocessing"]["channels"][0]["level"] = 90.0

    edited = _rewrite_metadata(saved, tmp_path / "edited.safetensors", window_90, keep_metadata_hash=True)
    saved.write_bytes(edited.read_bytes())
    with pytest.raises(ModelPackageError, match="SHA256SUMS beside it.*git checkout -- Resources/Models/default"):
        load_model_package(saved)
    with pytest.raises(ModelPackageError, match="The bundled default .* cannot be used: .*git checkout") as caught:
        resolve_model("default")
    assert "non-editable" not in str(caught.value) and "re-save" not in str(caught.value)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads which files this process maps (Linux)")
def test_rewriting_a_packages_metadata_holds_no_map_of_the_file_it_replaces(package_path, monkeypatch):
    """safetensors' tensors are views of a memory map of the package, and Windows cannot replace a mapped file:
    rewrite_package_metadata (which a changed package's error message recommends) failed there every time, as
    "Cannot replace ... it is probably open in another program". Windows' rule simulated: os.replace refuses a
    target this process maps."""
    from LiverTumorSegLib.package import rewrite_package_metadata

    real_replace = os.replace

    def mapped(path) -> bool:
        real = os.path.realpath(path)
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return any(line.split(maxsplit=5)[5].strip() == real for line in maps if len(line.split(maxsplit=5)) == 6)

    def windows_replace(source, target, **kwargs):
        if os.path.exists(target) and mapped(target):
            raise PermissionError(13, "The requested operation cannot be performed on a file with a user-mapped "
                                      "section open", str(source), None, str(target))
        return real_replace(source, target, **kwargs)

    monkeypatch.setattr(os, "replace", windows_replace)

    def describe(meta):
        meta["description"] = "rewritten"

    rewrite_package_metadata(package_path, describe)
    assert read_package_metadata(package_path)["description"] == "rewritten"
    assert not mapped(package_path)


def test_rewriting_a_packages_metadata_keeps_its_weights_and_its_checksum_list(tmp_path, monkeypatch):
    """rewrite_package_metadata: the weights' hash unchanged, the metadata's own hash sealed again (it loads), the
    bundled folder's checksum line updated; a change loading would refuse leaves the file as it was."""
    from LiverTumorSegLib.package import BUNDLED_CHECKSUMS, file_sha256, rewrite_package_metadata

    monkeypatch.setenv("LIVERTUMORSEG_RESOURCES", str(tmp_path / "res"))
    models = tmp_path / "res" / "Models"
    models.mkdir(parents=True)
    saved = save_model_package(models / "clinic.safetensors", _tiny_model(), PREP)
    before = read_package_metadata(saved)

    def describe(meta):
        meta["description"] = "rewritten"

    rewrite_package_metadata(saved, describe)
    after = read_package_metadata(saved)
    assert after["description"] == "rewritten" and after["weights_sha256"] == before["weights_sha256"]
    assert after["metadata_sha256"] != before["metadata_sha256"]
    assert (models / BUNDLED_CHECKSUMS).read_text() == f"{file_sha256(saved)}  clinic.safetensors\n"
    load_model_package("clinic")
    kept = saved.read_bytes()

    def unknown_setting(meta):
        meta["preprocessing"]["context_stride"] = 2

    with pytest.raises(InputError, match="was not changed.*context_stride"):
        rewrite_package_metadata(saved, unknown_setting)
    assert saved.read_bytes() == kept


def test_rewriting_refuses_a_damaged_package_and_a_change_segment_would_refuse_and_keeps_the_file_mode(tmp_path):
    """A package whose weights are damaged is refused before anything is written (its damage would be sealed in
    under a new metadata hash and checksum line); so is a change after which the preprocessing makes other input
    channels than the network takes; a read-only package stays read-only."""
    import os
    import stat

    from LiverTumorSegLib.package import rewrite_package_metadata

    torch.manual_seed(0)
    model = build_model("unet", in_channels=9, num_classes=3, channels=(4, 8), num_res_units=1)
    saved = save_model_package(tmp_path / "nine.safetensors", model, PREP)

    def more_context(meta):
        meta["preprocessing"]["context_slices"] = 2  # 15 input channels for a 9-channel network

    kept = saved.read_bytes()
    with pytest.raises(InputError, match="was not changed.*input channels"):
        rewrite_package_metadata(saved, more_context)
    assert saved.read_bytes() == kept
    os.chmod(saved, 0o444)
    rewrite_package_metadata(saved, lambda meta: meta.update(description="read-only"))
    assert stat.S_IMODE(saved.stat().st_mode) == 0o444
    assert read_package_metadata(saved)["description"] == "read-only"
    os.chmod(saved, 0o644)
    data = bytearray(saved.read_bytes())
    data[-8] ^= 0xFF  # a byte of the last tensor
    saved.write_bytes(bytes(data))
    with pytest.raises(ModelPackageError, match="integrity"):
        rewrite_package_metadata(saved, lambda meta: meta.update(description="sealed damage"))
    assert saved.read_bytes() == bytes(data)


def test_set_context_spacing_script_sets_the_bounds_and_leaves_single_slice_packages_alone(tmp_path, capsys):
    from script_helpers import load_script

    script = load_script("scripts/set_context_spacing.py", "set_context_spacing")
    stacked = save_model_package(tmp_path / "stacked.safetensors", _tiny_model(),
                                 dict(_as_dict(PREP), context_min_mm=None, context_max_mm=None))
    single = save_model_package(tmp_path / "single.safetensors", _tiny_model(),
                                dict(_as_dict(PREP), context_slices=0, context_min_mm=None, context_max_mm=None))
    single_bytes, weights = single.read_bytes(), read_package_metadata(stacked)["weights_sha256"]
    assert script.main([str(stacked), str(single), "--min-mm", "0.8", "--max-mm", "2.5"]) == 0
    out = capsys.readouterr().out
    assert "stacked.safetensors: neighbours unbounded -> 0.8 - 2.5 mm from the centre" in out
    assert "single.safetensors: single-slice input (context_slices 0), left unchanged" in out
    loaded = load_model_package(stacked).preprocessing
    assert (loaded.context_min_mm, loaded.context_max_mm) == (0.8, 2.5)
    assert read_package_metadata(stacked)["weights_sha256"] == weights
    assert single.read_bytes() == single_bytes
    kept = stacked.read_bytes()
    for bad, why in ((["--min-mm", "60"], "context_min_mm must be in"),
                     (["--min-mm", "3", "--max-mm", "2"], "must not exceed context_max_mm"),
                     (["--max-mm", "0.5"], "must not exceed context_max_mm")):  # against the kept min of 0.8
        assert script.main([str(stacked)] + bad) == 2  # refused before the file is touched
        assert why in capsys.readouterr().err and stacked.read_bytes() == kept
    with pytest.raises(SystemExit):  # neither bound given: a usage error, not a removal of both
        script.main([str(stacked)])
    assert "give --min-mm, --max-mm or both" in capsys.readouterr().err and stacked.read_bytes() == kept
    assert script.main([str(stacked), "--max-mm", "4"]) == 0  # the min stays
    assert "0.8 - 2.5 mm -> 0.8 - 4.0 mm from the centre" in capsys.readouterr().out
    assert script.main([str(stacked), "--min-mm", "none"]) == 0
    loaded = load_model_package(stacked).preprocessing
    assert (loaded.context_min_mm, loaded.context_max_mm) == (None, 4.0)
    assert "0.8 - 4.0 mm -> at most 4.0 mm from the centre" in capsys.readouterr().out  # not 'None - 4.0 mm'


def test_every_bundled_2_5d_package_keeps_neighbours_as_far_apart_as_its_training_slices():
    """The shipped packages were trained on the three shared patients (slices 1.0, 2.0 and 3.0 mm apart); on other
    CT their 2.5D neighbours stay 1-3 mm from the centre (README, robustness thin and thick rows)."""
    from LiverTumorSegLib.resources import bundled_models_dir

    packages = sorted(bundled_models_dir().glob("*.safetensors"))
    assert packages
    for path in packages:
        preprocessing = read_package_metadata(path)["preprocessing"]
        assert preprocessing["context_slices"] == 1, path.name
        assert (preprocessing["context_min_mm"], preprocessing["context_max_mm"]) == (1.0, 3.0), path.name


def test_a_missing_default_says_what_is_missing_and_how_to_restore_it(tmp_path, monkeypatch):
    """An install audit: a bundled folder holding other usable models but no default.safetensors got the advice for
    a non-editable install ('pip install -e .' or set LIVERTUMORSEG_RESOURCES), also when the variable was set, and a
    'warning above' that never came. Each case now gets its own message."""
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(tmp_path / "user"))
    monkeypatch.setenv("LIVERTUMORSEG_RESOURCES", str(tmp_path / "res"))
    with pytest.raises(ModelPackageError) as missing_folder:
        load_model_package("default")
    said = str(missing_folder.value)
    assert "does not exist" in said and f"LIVERTUMORSEG_RESOURCES={tmp_path / 'res'}" in said
    assert "pip install -e ." in said and "warning above" not in said

    models = tmp_path / "res" / "Models"
    models.mkdir(parents=True)
    save_model_package(models / "segnet_like.safetensors", _tiny_model(), PREP)
    with pytest.raises(ModelPackageError) as no_default:
        load_model_package("default")
    said = str(no_default.value)
    assert "holds segnet_like.safetensors, but no default.safetensors" in said
    assert "git checkout -- Resources/Models/default.safetensors" in said
    # the folder in use is named: under LIVERTUMORSEG_RESOURCES it may be no clone's (helper-24's audit)
    assert f"from the release into '{models}' (LIVERTUMORSEG_RESOURCES; if that is a clone's Resources/" in said
    assert "pip install -e ." not in said and "warning above" not in said


def test_a_wrong_checksum_entry_is_not_blamed_on_the_package_alone(tmp_path, monkeypatch):
    """Restoring the package, as the error said, did not help when SHA256SUMS itself was the damaged file."""
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(tmp_path / "user"))
    monkeypatch.setenv("LIVERTUMORSEG_RESOURCES", str(tmp_path / "res"))
    models = tmp_path / "res" / "Models"
    models.mkdir(parents=True)
    save_model_package(models / "clinic.safetensors", _tiny_model(), PREP)
    sums = models / "SHA256SUMS"
    sums.write_text("0" * 64 + sums.read_text()[64:])
    with pytest.raises(ModelPackageError) as damaged:
        load_model_package("clinic")
    said = str(damaged.value)
    assert "or SHA256SUMS was modified" in said
    assert "git checkout -- Resources/Models/clinic.safetensors Resources/Models/SHA256SUMS" in said


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weights_that_are_not_finite_are_refused_when_saved_and_when_loaded(tmp_path, bad):
    """A package whose weights held NaN loaded, and segment wrote 'liver volume: 0.0 mL' with exit 0; float16
    storage refused it as 'outside float16's range: store it as float32', which saved it."""
    from safetensors.torch import load_file, save_file

    from LiverTumorSegLib.package import sealed_metadata_json, weights_problem

    model = _tiny_model(6)
    with torch.no_grad():
        next(p for p in model.parameters() if p.dim() > 1).view(-1)[0] = bad
    for storage in ("float32", "float16"):
        with pytest.raises(InputError, match="NaN or infinite") as refused:
            save_model_package(tmp_path / f"{storage}.safetensors", model, PREP, weights_storage=storage)
        assert "outside float16's range" not in str(refused.value)
        assert not (tmp_path / f"{storage}.safetensors").exists()

    good = save_model_package(tmp_path / "good.safetensors", _tiny_model(6), PREP)
    tensors = load_file(str(good))
    name = next(k for k, v in tensors.items() if v.dim() > 1)
    tensors[name].view(-1)[0] = bad
    meta = read_package_metadata(good)
    meta["weights_sha256"] = weights_sha256(tensors)  # a consistent file: every hash matches
    forged = tmp_path / "forged.safetensors"
    save_file(tensors, str(forged), metadata={"livertumorseg": sealed_metadata_json(meta)})
    with pytest.raises(ModelPackageError, match=f"'{forged}' cannot segment: 1 weight tensor.*'{name}': 1 of"):
        load_model_package(forged)
    assert "NaN or infinite" in weights_problem(forged)  # models --verify lists it as unusable


def test_a_package_whose_suffix_is_upper_case_is_listed_and_found_by_name(tmp_path, monkeypatch):
    """save_model_package wrote 'Clinic.SAFETENSORS' and --model took its path, but the user folder's listing (a
    case-sensitive '*.safetensors') left it out without a word: 'No installed model named Clinic'."""
    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(user))
    saved = save_model_package(user / "Clinic.SAFETENSORS", _tiny_model(), PREP)
    assert [e["path"] for e in list_installed_models() if e["source"] == "user"] == [str(saved)]
    assert resolve_model("Clinic") == saved


@pytest.mark.parametrize("change, words", [
    (lambda meta: meta.update(weights_storage="float16"), "another type than the network's"),
    (lambda meta: meta["architecture"]["options"].update(channels=[8, 16]), "do not match architecture"),
    (lambda meta: meta["architecture"]["options"].update(attention_heads=2), r"unknown option\(s\)"),
    (lambda meta: meta.update(weights_sha256="0" * 64), "weights_sha256 would no longer be the weights'"),
])
def test_rewriting_refuses_a_metadata_change_the_weights_do_not_fit_before_the_file_is_replaced(tmp_path, change,
                                                                                               words):
    """The network and weights checks ran only in the load after the rewrite: the package was replaced by one that
    every load refused, and the user's working package was lost."""
    from LiverTumorSegLib.package import rewrite_package_metadata

    saved = save_model_package(tmp_path / "tiny.safetensors", _tiny_model(), PREP)
    kept = saved.read_bytes()
    with pytest.raises(InputError, match="was not changed.*" + words):
        rewrite_package_metadata(saved, change)
    assert saved.read_bytes() == kept
    load_model_package(saved)


def test_a_folder_given_as_the_package_is_named_with_the_packages_in_it(tmp_path):
    """'--model FOLDER' said only "Model package 'FOLDER' is not a file."."""
    folder = tmp_path / "models"
    folder.mkdir()
    save_model_package(folder / "tiny.safetensors", _tiny_model(), PREP)
    with pytest.raises(ModelPackageError, match=r"is a folder \(it holds tiny.safetensors\).*give the path of such"):
        load_model_package(folder)
    with pytest.raises(ModelPackageError, match="is a folder; a model package is one .safetensors file"):
        load_model_package(tmp_path / "models" / ".." / "models" / "..")


def test_models_verify_says_on_stderr_which_package_it_is_reading(tmp_path, monkeypatch, capsys):
    """`models --verify` reads every package whole and printed nothing while it did (13 s of silence for the bundled
    six on a busy 2-core machine, longer with large packages in the user folder). It now names each package on
    stderr before reading it, with a fraction counted in bytes, so stdout (the listing, or --json) stays as it was;
    --no-progress leaves the lines out."""
    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.commands import models as models_command

    folder = tmp_path / "user_models"
    folder.mkdir()
    for index, name in enumerate(("first", "second")):  # usable: as many input channels as PREP makes
        torch.manual_seed(index)
        network = build_model("unet", in_channels=PREP.in_channels, num_classes=3, channels=(4, 8), num_res_units=1)
        save_model_package(folder / f"{name}.safetensors", network, PREP, metadata={"name": name})
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(folder))
    monkeypatch.setenv("LIVERTUMORSEG_RESOURCES", str(tmp_path / "res"))  # no bundled packages: seconds
    calls = []
    installed = [{"name": name, "path": str(folder / f"{name}.safetensors")} for name in ("first", "second")]
    models_command.mark_damaged_weights(installed, lambda fraction, stage: calls.append((fraction, stage)))
    assert [stage.split(" (")[0] for _, stage in calls] == ["verifying 1/2: first", "verifying 2/2: second",
                                                           "verified 2 package(s), 0.0 MB"]
    assert calls[0][0] == 0.0 and 0.4 < calls[1][0] < 0.6 and calls[2][0] == 1.0  # two packages of one size
    assert all(entry["weights_verified"] and entry["error"] is None for entry in installed)
    refused = [{"name": "edited", "path": str(folder / "first.safetensors"), "error": "edited metadata"}]
    models_command.mark_damaged_weights(refused, None)  # refused before: its weights were never read
    assert refused[0]["weights_verified"] is False and refused[0]["error"] == "edited metadata"
    assert main(["models", "--verify", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["installed"]  # stdout is the JSON alone
    assert "verifying 1/2: first" in captured.err and "verifying 2/2: second" in captured.err
    assert main(["models", "--verify", "--no-progress"]) == 0
    assert "verifying" not in capsys.readouterr().err


def test_models_verify_refuses_what_every_load_refuses(tmp_path):
    """A tensor of another shape or dtype than the network's, or a preprocessing setting out of range, passed
    `models --verify` (listed usable, exit 0) while every load refused the package."""
    from safetensors.torch import load_file, save_file

    from LiverTumorSegLib.package import sealed_metadata_json, weights_problem

    source = save_model_package(tmp_path / "src.safetensors", _tiny_model(), PREP)
    assert weights_problem(source) is None

    def variant(name, change_tensors=None, change_meta=None):
        tensors, meta = load_file(str(source)), read_package_metadata(source)
        if change_tensors:
            change_tensors(tensors)
        if change_meta:
            change_meta(meta)
        meta["weights_sha256"] = weights_sha256(tensors)  # every hash matches: only the content is wrong
        save_file(tensors, str(tmp_path / name), metadata={"livertumorseg": sealed_metadata_json(meta)})
        return tmp_path / name

    first = sorted(load_file(str(source)))[0]
    cases = {
        variant("shape.safetensors", lambda t: t.update({first: torch.zeros(3, 3)})): "with other shapes",
        variant("dtype.safetensors", lambda t: t.update({first: t[first].double()})): "another type",
        variant("width.safetensors", change_meta=lambda m: m["preprocessing"]["channels"][0].update(width=0)):
            "invalid preprocessing configuration: channels",
    }
    for path, words in cases.items():
        with pytest.raises(ModelPackageError, match=words):
            load_model_package(path)
        assert words in (weights_problem(path) or ""), path.name


@pytest.mark.parametrize("dtype, storage", [(torch.float16, "float32"), (torch.bfloat16, "float32"),
                                            (torch.float16, "float16"), (torch.float64, "float32")])
def test_a_network_that_is_not_float32_is_saved_so_that_it_loads_or_refused(tmp_path, dtype, storage):
    """A model.half() / .bfloat16() / .double() network was written with its own dtype, and every load refused the
    package ('F16 but must be F32'): the loader builds a float32 network."""
    model = _tiny_model(7).to(dtype)
    path = tmp_path / "cast.safetensors"
    if dtype == torch.float64:
        with pytest.raises(InputError, match="are float64 .*would be rounded.*model.float"):
            save_model_package(path, model, PREP, weights_storage=storage)
        assert not path.exists()
        return
    save_model_package(path, model, PREP, weights_storage=storage)
    loaded = load_model_package(path).model.state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded[name], tensor.float()), name  # float16 / bfloat16 -> float32 is exact


def test_models_says_when_the_user_folder_is_a_file_or_missing(tmp_path, monkeypatch, capsys):
    """LIVERTUMORSEG_MODELS_DIR naming a file, or mistyped, listed no user model without a word."""
    from LiverTumorSegLib.cli import main

    a_file = tmp_path / "models.txt"
    a_file.write_text("not a folder")
    for folder, state, exists in ((a_file, "(not a folder)", False), (tmp_path / "nosuch", "(does not exist yet)",
                                                                     False), (tmp_path, "", True)):
        monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(folder))
        assert main(["models"]) == 0
        assert f"user: {folder}{' ' + state if state else ''}):" in capsys.readouterr().out
        assert main(["models", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["user_models_dir_exists"] is exists


def test_models_notes_a_package_that_loads_but_segment_refuses(tmp_path, monkeypatch, capsys):
    """A package whose preprocessing makes other input channels than its network takes loads, but segment refuses
    it; `models` (and --verify) listed it as usable without a word."""
    from LiverTumorSegLib.cli import main

    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(user))
    odd = save_model_package(user / "odd.safetensors", _tiny_model(), PREP)  # 1-channel network, 9-channel input
    torch.manual_seed(0)
    nine = build_model("unet", in_channels=9, num_classes=3, channels=(4, 8), num_res_units=1)
    fine = save_model_package(user / "fine.safetensors", nine, PREP)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "note: segment and evaluate refuse it: Model package '" + str(odd) + "' is inconsistent" in out
    assert out.count("segment and evaluate refuse it") == 1
    assert main(["models", "--json"]) == 0
    rows = {e["path"]: e for e in json.loads(capsys.readouterr().out)["installed"]}
    assert "9 input channels" in rows[str(odd)]["segment_refusal"] and "segment_refusal" not in rows[str(fine)]
    assert main(["models", "--verify"]) == 2       # unusable for segment: --verify exited 0 with the note only
    # and its error line counts it (it said '0 installed package(s) failed verification (listed as UNUSABLE above)')
    assert "error: 1 installed package(s) failed verification (1 noted as refused by segment and evaluate above)" \
        in capsys.readouterr().err
    odd.unlink()
    assert main(["models", "--verify"]) == 0


def test_a_link_whose_target_is_gone_is_called_one(tmp_path, monkeypatch):
    """'--model link.safetensors' said the link 'does not exist' while 'ls' showed it, and the user folder's listing
    left such a link out without a word."""
    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(user))
    link = user / "mine.safetensors"
    try:
        link.symlink_to(tmp_path / "moved.safetensors")
        (user / "loop.safetensors").symlink_to(user / "loop.safetensors")
    except (OSError, NotImplementedError):
        pytest.skip("no symbolic links here")
    with pytest.raises(ModelPackageError, match="is a symbolic link to '.*moved.safetensors' that leads to no file"):
        load_model_package(link)
    with pytest.raises(ModelPackageError, match="symbolic link .*the links form a loop"):
        load_model_package(user / "loop.safetensors")
    with pytest.raises(ModelPackageError, match="' does not exist. Check the path"):
        load_model_package(tmp_path / "moved.safetensors")
    errors = {Path(e["path"]).name: e["error"] for e in list_installed_models(warn=False) if e["source"] == "user"}
    assert sorted(errors) == ["loop.safetensors", "mine.safetensors"]
    assert "symbolic link" in errors["mine.safetensors"]


def test_a_device_torch_does_not_know_or_lacks_is_refused_before_loading(package_path, monkeypatch):
    """After the whole load, torch said 'AssertionError: Torch not compiled with CUDA enabled' (a CPU-only torch) or
    listed twenty device types for a typo."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="device 'cuda:1' is not available here .*sees 0 CUDA GPU.*device='cpu'"):
        load_model_package(package_path, device="cuda:1")
    with pytest.raises(InputError, match="device 'gpu0' is not a device torch knows; use 'cpu'"):
        load_model_package(package_path, device="gpu0")
    # 'PyTorch is not linked with support for mps devices', a RuntimeError after the whole load (the models audit)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(InputError, match="device 'mps' is not available here .*no usable Apple MPS device"):
        load_model_package(package_path, device="mps")
    with pytest.raises(InputError, match="device 'meta' is not one this library runs on"):
        load_model_package(package_path, device="meta")
    for device in ("cpu", torch.device("cpu"), None):
        assert not load_model_package(package_path, device=device).model.training


def test_a_network_larger_than_loading_accepts_is_not_saved(tmp_path, monkeypatch):
    """A network over the loader's parameter limit (alexnet_fcn with width 2 and fc_channels 8192 has 585 M) was
    written, and every load refused it as 'corrupt or hostile'."""
    import LiverTumorSegLib.package as package

    model = _tiny_model()
    count = sum(p.numel() for p in model.parameters())
    monkeypatch.setattr(package, "MAX_PARAMETERS", count - 1)
    with pytest.raises(InputError, match="Not saved: the network has .* parameters, more than .* loading refuses "
                                         "such a package.*smaller network"):
        save_model_package(tmp_path / "big.safetensors", model, PREP)
    assert not (tmp_path / "big.safetensors").exists()
    monkeypatch.setattr(package, "MAX_PARAMETERS", count)
    load_model_package(save_model_package(tmp_path / "fits.safetensors", model, PREP))


def test_a_network_whose_activations_loading_refuses_is_not_saved(tmp_path, monkeypatch):
    """The 2 GiB activation limit was checked before training and at every load, not at the save: a package a
    library caller saved was written, and every load refused it as 'corrupt or hostile'. One rule
    (package.network_size_problem) now serves the three."""
    import LiverTumorSegLib.package as package

    monkeypatch.setenv("LIVERTUMORSEG_CACHE_DIR", str(tmp_path / "cache"))
    model = _tiny_model()
    path = save_model_package(tmp_path / "fits.safetensors", model, PREP)
    needed = load_model_package(path).activation_bytes_per_pixel * package.ACTIVATION_PROBE_HW ** 2
    monkeypatch.setattr(package, "MAX_ACTIVATION_BYTES", int(needed) - 1)
    with pytest.raises(InputError, match="Not saved: the network's layer outputs for one 256 x 256 slice take .* "
                                         "GiB, more than .* loading refuses such a package"):
        save_model_package(tmp_path / "big.safetensors", model, PREP)
    assert not (tmp_path / "big.safetensors").exists()
    with pytest.raises(ModelPackageError, match="layer outputs for one 256 x 256 slice take"):
        load_model_package(path)  # the load applies the same rule
    monkeypatch.setattr(package, "MAX_ACTIVATION_BYTES", int(needed))
    load_model_package(save_model_package(tmp_path / "exact.safetensors", model, PREP))  # at the limit: kept


def test_a_package_records_every_preprocessing_setting_and_an_older_partial_one_loads_with_a_warning(tmp_path,
                                                                                                   caplog):
    """A package saved with a partial preprocessing dict ({} included) recorded only those keys and took this
    library's defaults for the rest at every load, so a later change of a default would have changed its
    preprocessing without a word (helper-27's audit). save_model_package now records every setting; a package
    that records part of them (written before) loads with a warning naming the settings it lacks."""
    import logging

    from LiverTumorSegLib.package import rewrite_package_metadata
    from LiverTumorSegLib.preprocessing import PreprocessingConfig

    model = build_model("unet", in_channels=3, num_classes=3, channels=(4, 8), num_res_units=1)
    saved = save_model_package(tmp_path / "partial.safetensors", model, {"target_spacing_mm": 2.0})
    recorded = read_package_metadata(saved)["preprocessing"]
    expected = PreprocessingConfig.from_dict({"target_spacing_mm": 2.0}).to_dict()
    assert recorded == expected and set(recorded) == set(PreprocessingConfig().to_dict())
    with caplog.at_level(logging.WARNING):
        load_model_package(saved)
    assert "does not record the preprocessing" not in caplog.text

    def drop(meta):  # as an older package (saved before 26 Nov 2026) recorded it
        meta["preprocessing"] = {"target_spacing_mm": 2.0}
        meta["created"] = "2026-11-24T12:00:00+00:00"

    rewrite_package_metadata(saved, drop)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        package = load_model_package(saved)
    assert package.preprocessing.to_dict() == expected
    assert "does not record the preprocessing setting(s) body_threshold_hu, channels, " in caplog.text
    assert "current defaults are used for them" in caplog.text
    # the same gap in a package saved since every setting is recorded was made by hand (its channels taken away,
    # the network run on the defaults: a 15,302 mL 'liver' in the models audit): refused, and 'models' says so
    from LiverTumorSegLib.package import _recorded_preprocessing

    edited = dict(read_package_metadata(saved), created="2026-12-01T12:00:00+00:00")
    with pytest.raises(ModelPackageError, match=r"does not record the preprocessing setting\(s\) body_threshold_hu, "
                                                r"channels, .*every package saved since 2026-11-26 records: it was "
                                                r"damaged or edited"):
        _recorded_preprocessing(edited, saved)  # what load, the listing and --verify read it with
    with pytest.raises(InputError, match="was not changed: loading or segmenting would refuse"):
        rewrite_package_metadata(saved, lambda meta: meta.update(created="2026-12-01T12:00:00+00:00"))


def test_a_package_saved_before_the_context_bounds_existed_loads_without_the_unrecorded_setting_warning(tmp_path,
                                                                                                        caplog):
    """The v1, v2 and v4 default models README says load with --model (saved 22-24 Nov 2026, before context_min_mm and
    context_max_mm were added on 25 Nov) were warned 'does not record the preprocessing setting(s) context_max_mm,
    context_min_mm; ... may not be what its network was trained with', though their default (None: no bound) is what
    every earlier version did. A package saved after the settings existed that lacks them is still warned of."""
    import logging

    from LiverTumorSegLib.package import rewrite_package_metadata

    saved = save_model_package(tmp_path / "old.safetensors", _tiny_model(), PREP)

    def as_saved_on(created):
        def edit(meta):
            meta["created"] = created
            for setting in ("context_min_mm", "context_max_mm"):
                meta["preprocessing"].pop(setting)
        return edit

    rewrite_package_metadata(saved, as_saved_on("2026-11-24T17:26:57+00:00"))  # v4's
    with caplog.at_level(logging.WARNING, logger="LiverTumorSegLib.package"):
        package = load_model_package(saved)
    assert package.preprocessing.context_min_mm is None and package.preprocessing.context_max_mm is None
    assert "does not record the preprocessing" not in caplog.text
    later = save_model_package(tmp_path / "later.safetensors", _tiny_model(), PREP)
    rewrite_package_metadata(later, as_saved_on("2026-11-25T09:00:00+00:00"))  # context_max_mm did not exist yet
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="LiverTumorSegLib.package"):
        load_model_package(later)
    assert "does not record the preprocessing setting(s) context_min_mm; this library's current defaults" in caplog.text


def test_a_package_saved_with_name_none_is_named_by_its_file(tmp_path):
    """metadata {"name": None} was stored as the text 'None', which 'models' listed as the package's name."""
    saved = save_model_package(tmp_path / "liver_v5.safetensors", _tiny_model(), PREP, metadata={"name": None})
    assert read_package_metadata(saved)["name"] == "liver_v5"


def test_a_listed_package_without_preprocessing_does_not_end_the_listing(package_path, tmp_path, monkeypatch, capsys):
    """One package in the user's folder recording no preprocessing ended `livertumorseg models` (and --verify,
    --json) in "internal error: KeyError: 'preprocessing'" for every model (the fuzzing audit), while segment loads
    such a package with the defaults and a warning."""
    from LiverTumorSegLib.cli import main

    models = tmp_path / "models"
    models.mkdir()
    _rewrite_metadata(package_path, models / "old.safetensors", lambda meta: meta.pop("preprocessing"))
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(models))
    for extra in ([], ["--json"], ["--verify"]):
        assert main(["models"] + extra) in (0, 2)
        assert "internal error" not in capsys.readouterr().err


def test_a_model_name_of_a_hidden_package_file_says_why_it_is_not_found(tmp_path, monkeypatch):
    """'.mine.safetensors' in the user models folder is skipped as a hidden file (a temporary, a macOS '._' copy);
    '--model .mine' said only 'No installed model named .mine', naming no reason."""
    from LiverTumorSegLib.package import resolve_model

    user = tmp_path / "user"
    user.mkdir()
    (user / ".mine.safetensors").write_bytes(b"not read")
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(user))
    for name in (".mine", "mine"):
        with pytest.raises(ModelPackageError) as refused:
            resolve_model(name, warn=False)
        hinted = "names that begin with a dot are skipped as hidden files" in str(refused.value)
        assert hinted == (name == ".mine"), str(refused.value)


# ---------------------------------------------------------------------------------------------------
# reproducers from a seeded fuzz of package files (byte flips, truncations, header and metadata edits)

def _resealed(src: Path, dst: Path, change) -> Path:
    """Copy package ``src`` to ``dst`` with its metadata changed by ``change(meta)`` and its own hash sealed again
    (a self-consistent package, as the library would write it): only the changed value can be refused."""
    from safetensors.torch import load_file, save_file

    from LiverTumorSegLib.package import metadata_sha256

    meta = json.loads(read_safetensors_header(src)["__metadata__"]["livertumorseg"])
    change(meta)
    meta.pop("metadata_sha256", None)
    meta["metadata_sha256"] = metadata_sha256(meta)
    save_file(load_file(str(src)), str(dst), metadata={"livertumorseg": json.dumps(meta), "format": "pt"})
    return dst


@pytest.mark.parametrize("version", ["0.\u00b2", "1." + "9" * 5000])
def test_a_library_version_int_cannot_read_is_no_internal_error(package_path, tmp_path, version):
    """'0.²' (a superscript two: str.isdigit says yes, int says no) or a 5,000-digit part (past Python's int-from-text
    limit) as the recording library version: every load, the models list and 'models --verify' raised ValueError
    ('internal error', exit 1). It is no version this library can compare: the package loads as one of unknown age."""
    from LiverTumorSegLib.package import _unusable_reason, weights_problem

    odd = _resealed(package_path, tmp_path / "odd.safetensors", lambda m: m.update(library_version=version))
    assert read_package_metadata(odd)["library_version"] == version
    assert weights_problem(odd) is None
    assert _unusable_reason(odd)[1] is None
    loaded = load_model_package(odd)
    original = load_model_package(package_path)
    assert all(torch.equal(v, original.model.state_dict()[k]) for k, v in loaded.model.state_dict().items())


def test_a_link_loop_passed_to_weights_problem_is_named_not_raised(tmp_path):
    """weights_problem (models --verify's check) of a symbolic link to itself raised RuntimeError ('Symlink loop')
    from the bundled-folder test, before the header was read; it now says what the link is."""
    from LiverTumorSegLib.package import weights_problem

    loop = tmp_path / "loop.safetensors"
    loop.symlink_to(loop)
    problem = weights_problem(loop)
    assert problem is not None and "symbolic link" in problem and str(loop) in problem


def _with_header(src: Path, dst: Path, change, data_change=None) -> Path:
    """Copy package ``src`` to ``dst`` with its safetensors header (parsed JSON) changed by ``change(header)``, the
    tensor bytes as they were (or ``data_change(data)``): damage no hash can be recomputed for."""
    raw = src.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    change(header)
    data = raw[8 + length:]
    text = json.dumps(header).encode("utf-8")
    dst.write_bytes(struct.pack("<Q", len(text)) + text + (data_change(data) if data_change else data))
    return dst


def _one_element_tensor(header):
    return next(name for name, info in header.items() if name != "__metadata__" and info["shape"] == [1])


def test_a_boolean_in_a_tensor_shape_is_called_malformed_not_left_to_safetensors(package_path, tmp_path):
    """JSON true passed the header check as the integer 1 (a bool is an int in Python); safetensors then refused the
    file in its own words ('Error while deserializing header: invalid JSON in header: invalid type: boolean `true`,
    expected usize') with nothing to do."""
    def to_true(header):
        header[_one_element_tensor(header)]["shape"] = [True]

    bad = _with_header(package_path, tmp_path / "bool_shape.safetensors", to_true)
    with pytest.raises(ModelPackageError) as refused:
        load_model_package(bad)
    text = str(refused.value)
    assert "is malformed (bad dimension True)" in text and "deserializing" not in text
    assert str(bad) in text and text.endswith("Download or copy it again.")


def test_a_very_long_tensor_name_is_shortened_in_the_message(package_path, tmp_path):
    """An extra tensor named with 5,000 characters made a 5,300-character error line (the header may hold 100 MB of
    names); the name is now cut to 80 characters."""
    def add(header):
        end = max(info["data_offsets"][1] for name, info in header.items() if name != "__metadata__")
        header["a" * 5000] = {"dtype": "F32", "shape": [1], "data_offsets": [end, end + 4]}

    bad = _with_header(package_path, tmp_path / "long_name.safetensors", add, lambda data: data + bytes(4))
    with pytest.raises(ModelPackageError) as refused:
        load_model_package(bad)
    text = str(refused.value)
    assert "1 unexpected" in text and "a" * 77 + "..." in text and "a" * 81 not in text and len(text) < 1000


def _overlap(header):
    names = sorted((n for n in header if n != "__metadata__"), key=lambda n: header[n]["data_offsets"][0])
    first, second = header[names[0]], header[names[1]]
    second["data_offsets"] = [0, second["data_offsets"][1] - second["data_offsets"][0]]
    del first  # (both now begin at byte 0)


def _with_raw_header(src: Path, dst: Path, header_text: bytes) -> Path:
    """Copy package ``src`` to ``dst`` with its header replaced by the bytes ``header_text`` (length field to match),
    the tensor bytes as they were."""
    raw = src.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    dst.write_bytes(struct.pack("<Q", len(header_text)) + header_text + raw[8 + length:])
    return dst


def _shrink_a_shape(header):
    """A tensor of more than one element said to hold one: its data span (bytes) no longer fits its shape."""
    name = next(n for n, info in header.items() if n != "__metadata__" and info["shape"] != [1])
    header[name]["shape"] = [1]


DAMAGE = {
    "header not JSON": lambda src, dst: dst.write_bytes(src.read_bytes()[:20] + b"\xff" + src.read_bytes()[21:]),
    "tensor data overlapping": lambda src, dst: _with_header(src, dst, _overlap),
    "offsets missing": lambda src, dst: _with_header(src, dst, lambda h: h[_one_element_tensor(h)].pop(
        "data_offsets")),
    "__metadata__ a list": lambda src, dst: _with_header(src, dst, lambda h: h.update(__metadata__=["x"])),
    "metadata JSON cut": lambda src, dst: _with_header(src, dst, lambda h: h["__metadata__"].update(
        livertumorseg=h["__metadata__"]["livertumorseg"][:-1])),
    "in_channels 0": lambda src, dst: _resealed(src, dst, lambda m: m["architecture"].update(in_channels=0)),
    "default 'yes'": lambda src, dst: _resealed(src, dst, lambda m: m.update(default="yes")),
    "weights_sha256 removed": lambda src, dst: _resealed(src, dst, lambda m: m.pop("weights_sha256")),
    "header a JSON list": lambda src, dst: _with_raw_header(src, dst, b"[1, 2]"),
    "header nested 100,000 deep": lambda src, dst: _with_raw_header(src, dst, b"[" * 100_000 + b"]" * 100_000),
    "negative data offset": lambda src, dst: _with_header(src, dst, lambda h: h[_one_element_tensor(h)].update(
        data_offsets=[-4, h[_one_element_tensor(h)]["data_offsets"][1]])),
    "shape too small for its bytes": lambda src, dst: _with_header(src, dst, _shrink_a_shape),
    "metadata a JSON list": lambda src, dst: _with_header(src, dst, lambda h: h["__metadata__"].update(
        livertumorseg="[1]")),
    "architecture without options": lambda src, dst: _resealed(src, dst, lambda m: m["architecture"].pop("options")),
    "architecture name a number": lambda src, dst: _resealed(src, dst, lambda m: m["architecture"].update(name=3)),
    "19 channel entries": lambda src, dst: _resealed(src, dst, lambda m: m["architecture"]["options"].update(
        channels=list(range(1, 20)))),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_package_is_told_what_to_do(package_path, tmp_path, damage):
    """A fuzz of package files found 52 kinds of refusal (3,359 of 4,418 cases) that named the file and what was
    wrong but nothing to do ('its header is not valid JSON (...); the file is corrupt.', 'tensor data overlap or
    leave gaps.', 'metadata 'default' must be true or false.'). Damage in the header or tensor data now says to
    download or copy it again; metadata of the wrong form, to obtain a fresh copy."""
    bad = tmp_path / "damaged.safetensors"
    DAMAGE[damage](package_path, bad)
    with pytest.raises(ModelPackageError) as refused:
        load_model_package(bad)
    text = str(refused.value)
    assert str(bad) in text and "\n" not in text
    assert text.endswith("Download or copy it again.") or "obtain a fresh copy" in text, text


@pytest.mark.parametrize("damage, named", [
    ("header a JSON list", "its header is not a JSON object; the file is corrupt."),
    ("header nested 100,000 deep", "its header nests JSON too deeply; the file is corrupt or hostile."),
    ("negative data offset", "is malformed (bad data_offsets); the file is corrupt."),
    ("shape too small for its bytes", "bytes but its shape [1] x F32 needs 4."),
    ("metadata a JSON list", "has corrupt metadata (not a JSON object)."),
    ("architecture without options", "has an invalid 'architecture' entry (it needs name, in_channels, num_classes "
                                     "and options)"),
    ("architecture name a number", "architecture name must be a string, got 3."),
    ("19 channel entries", "architecture option 'channels' has 19 entries (at most 16)."),
])
def test_header_damage_is_named_alike_by_loading_and_the_metadata_reader(package_path, tmp_path, damage, named):
    """These header and metadata refusals had never run in a test: each names what is wrong (a list for the header
    or the metadata, JSON nested deeper than Python's parser recurses, a negative byte offset, a 4-byte shape over
    more bytes, an architecture entry lacking a key, of the wrong type or with too long a list), and
    read_package_metadata (the models listing) refuses as loading does, not with a RecursionError, a KeyError or a
    raw safetensors error."""
    bad = tmp_path / "damaged.safetensors"
    DAMAGE[damage](package_path, bad)
    for read in (load_model_package, read_package_metadata):
        with pytest.raises(ModelPackageError) as refused:
            read(bad)
        assert named in str(refused.value) and str(bad) in str(refused.value)


def test_a_too_large_recorded_network_says_what_to_do_on_load_and_not_when_a_rewrite_asked_for_it(tmp_path,
                                                                                                 monkeypatch):
    """A package whose re-sealed metadata names 8,000-channel layers was refused with what was wrong only ('the
    package is corrupt or hostile ...'); loading now adds the advice of the other metadata refusals: a package of the
    bundled folder is restored from the release, any other re-obtained. rewrite_package_metadata, refusing a change
    the caller asked for, gives no such advice (a fresh copy would not help: the change is at fault)."""
    from LiverTumorSegLib.package import (metadata_sha256, read_safetensors_header, rewrite_package_metadata,
                                          weights_problem)
    from safetensors.torch import load_file, save_file

    monkeypatch.setenv("LIVERTUMORSEG_RESOURCES", str(tmp_path / "res"))
    models = tmp_path / "res" / "Models"
    models.mkdir(parents=True)
    saved = save_model_package(tmp_path / "clinic.safetensors", _tiny_model(), PREP)
    kept = saved.read_bytes()

    def widen(meta):
        meta["architecture"]["options"]["channels"] = [8000, 8000]

    with pytest.raises(InputError) as info:
        rewrite_package_metadata(saved, widen)
    assert "more than the 200 M a model package may hold" in str(info.value)
    assert "fresh copy" not in str(info.value) and "restore it" not in str(info.value)
    assert saved.read_bytes() == kept

    meta = json.loads(read_safetensors_header(saved)["__metadata__"]["livertumorseg"])
    widen(meta)
    meta.pop("metadata_sha256")
    meta["metadata_sha256"] = metadata_sha256(meta)  # edited and re-sealed
    for folder in (tmp_path / "elsewhere", models):
        folder.mkdir(exist_ok=True)
        bad = folder / "wide.safetensors"
        save_file(load_file(str(saved)), str(bad), metadata={"livertumorseg": json.dumps(meta), "format": "pt"})
        if folder == models:  # listed as it is, so that the size check, not the checksum, refuses it
            from LiverTumorSegLib.package import record_bundled_checksum
            record_bundled_checksum(bad)
        with pytest.raises(ModelPackageError) as info:
            load_model_package(bad)
        message = str(info.value)
        assert message.startswith(f"Model package '{bad}': the network has ")
        assert " M parameters, more than the 200 M a model package may hold" in message
        assert "such a network). The package was damaged or edited: " in message
        if folder == models:
            assert "restore it from the release" in message
        else:
            assert message.endswith("obtain a fresh copy (to change a package's metadata on purpose, use "
                                    "LiverTumorSegLib.package.rewrite_package_metadata on the unchanged original).")
        assert weights_problem(bad) == message


def test_a_ct_or_a_report_given_as_the_model_is_named_for_what_it_is(tmp_path, monkeypatch):
    """--model ct.nii.gz was told 'write ./ct.nii.gz to use it as a package', then './ct.nii.gz' that it was
    gzip-compressed and should be unpacked; a JSON report had a header length of 8e18 bytes (the file-kind audit)."""
    from LiverTumorSegLib.package import resolve_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "ct.nii.gz").write_bytes(b"\x1f\x8b" + bytes(100))
    (tmp_path / "seg.json").write_text('{"liver_volume_ml": 1}')
    with pytest.raises(ModelPackageError, match=r"'\./ct\.nii\.gz' is an image volume \(\.nii\.gz\), not a model "
                                                r"package: --model takes a \.safetensors package"):
        resolve_model("./ct.nii.gz")
    with pytest.raises(ModelPackageError, match=r"'\./seg\.json' is a text file \(\.json"):
        resolve_model("./seg.json")
    with pytest.raises(ModelPackageError, match=r"a file 'ct\.nii\.gz' exists here, but it is an image volume"):
        resolve_model("ct.nii.gz")


@pytest.mark.parametrize("failure, said", [(MemoryError(), "memory"), (ImportError("failed to map segment"),
                                                                        "a library failed to load")])
def test_a_network_that_the_machine_cannot_build_is_not_called_a_corrupt_package(package_path, monkeypatch, failure,
                                                                                  said):
    """Under a memory limit, building the network failed with MemoryError or an ImportError (a library that could
    not be mapped), and the message said 'the package is corrupt ... restore it from the release' of a good file
    (the memory audit)."""
    from LiverTumorSegLib import models
    from LiverTumorSegLib.errors import ResourceError

    def fails(*args, **kwargs):
        raise failure

    monkeypatch.setattr(models, "build_model", fails)
    with pytest.raises(ResourceError, match=said) as raised:
        load_model_package(package_path)
    assert "corrupt" not in str(raised.value)


def test_an_option_value_of_a_newer_version_is_told_to_update(package_path, tmp_path):
    """An architecture option value this library refuses (``norm: group``) in a package written by a newer
    version was called damage ('get a fresh copy'), while an unknown option name in the same package was told to
    update LiverTumorSeg (the package audit): both say to update now."""
    from LiverTumorSegLib.package import metadata_sha256

    def newer(meta):
        meta["library_version"] = "9.0.0"
        meta["architecture"]["options"]["norm"] = "group"
        meta.pop("metadata_sha256")
        meta["metadata_sha256"] = metadata_sha256(meta)

    changed = _rewrite_metadata(package_path, tmp_path / "newer.safetensors", newer, keep_metadata_hash=True)
    with pytest.raises(ModelPackageError) as info:
        load_model_package(changed)
    message = str(info.value)
    assert "records architecture options this library refuses" in message, message
    assert "written by LiverTumorSeg 9.0.0, newer than this one" in message and "fresh copy" not in message


def test_installed_package_names_and_shell_words_for_advice(monkeypatch):
    """A file name of dots only became '.safetensors', hidden from the list it was added to; advice quoted with
    POSIX quotes kept them on Windows, where cmd.exe splits at the space and keeps the quotes (the review)."""
    import os

    from LiverTumorSegLib.fileutil import shell_word
    from LiverTumorSegLib.package import installed_package_name

    assert installed_package_name("/downloads/...") == "model.safetensors"
    assert installed_package_name("/downloads/.safetensors") == "model.safetensors"
    assert installed_package_name("/downloads/.clinic.safetensors") == "clinic.safetensors"
    assert installed_package_name("/downloads/clinic_model") == "clinic_model.safetensors"
    assert shell_word("mine a") == "'mine a'" and shell_word("mine") == "mine"
    monkeypatch.setattr(os, "name", "nt")
    assert shell_word("mine a") == '"mine a"' and shell_word("mine") == "mine"


def test_a_package_loads_under_a_float64_default_dtype_and_leaves_it_as_it_was(package_path):
    """A notebook's torch.set_default_dtype(torch.float64) built the network in float64, and every package was
    refused as damaged: 'tensor(s) have another type than the network's (... F32 but must be F64) ... Re-export the
    package' (the API audit). The network is float32 by contract; the caller's default is given back."""
    expected = load_model_package(package_path)
    x = torch.linspace(-1, 1, 1 * 1 * 16 * 16, dtype=torch.float32).reshape(1, 1, 16, 16)
    with torch.no_grad():
        want = expected.model.eval()(x)
    caller = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        loaded = load_model_package(package_path)
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(caller)
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}
    with torch.no_grad():
        assert torch.equal(loaded.model.eval()(x), want)
