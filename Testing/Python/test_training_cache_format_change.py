"""A slice cache of an older format is replaced, not doubled: each case cached again in the current format has its
older entry removed (its three files, and the older key folder once empty). Before, a format change (4 -> 5: an
oblique CT's labels outside its footprint became IGNORE_LABEL) cached every case again in a new key folder beside the
old one, which stayed on disk for good. Only files the older cache wrote for the cases being cached go: a file the
user put in that folder, another data set's entry and the current format's entries stay."""
import hashlib
import json
import shutil

import numpy as np

import test_training_oblique_grid as oblique
from LiverTumorSegLib.preprocessing import SlicePreprocessor
from LiverTumorSegLib.training import slice_cache
from LiverTumorSegLib.training.slice_cache import build_slice_cache, cache_key, spatial_settings_of


def _format_3_key(spatial, label_map=None):
    """The key as formats 1-3 made it (no oblique_grid)."""
    text = json.dumps({"v": 3, "spatial": spatial,
                       "label_map": {str(k): int(v) for k, v in (label_map or {}).items()}}, sort_keys=True)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_a_format_4_cache_is_replaced_when_its_cases_are_cached_again(tmp_path, monkeypatch):
    monkeypatch.setattr(oblique, "SHAPE_ZYX", (4, 24, 24))
    cases = [oblique._case(tmp_path / "data", 20.0, name=f"c{i}", seed=i)[0] for i in range(2)]
    preprocessor = SlicePreprocessor(oblique._config())
    cache = tmp_path / "cache"
    with monkeypatch.context() as old:
        old.setattr(slice_cache, "CACHE_VERSION", 4)  # as version 0.6.6 wrote it
        build_slice_cache(cases, preprocessor, cache)
    spatial = spatial_settings_of(preprocessor.config.to_dict())
    old_folder = cache / cache_key(spatial, None, "aligned", version=4)
    assert len(list(old_folder.glob("*.npy"))) == 4
    said = []
    rebuilt = build_slice_cache(cases[:1], preprocessor, cache, log=said.append)
    new_folder = cache / cache_key(spatial, None, "aligned")
    assert new_folder != old_folder and np.asarray(rebuilt[0].labels).max() == 255  # format 5: ignored outside
    # c0's format-4 entry is gone; c1 (not in this run) keeps its own until it is cached again
    assert [name.split("-")[0] for name in _files(old_folder)] == ["c1"] * 3
    assert any("removed 1 case(s)' entries of an older slice cache format" in line for line in said)
    (old_folder / "notes.txt").write_text("the user's", encoding="utf-8")
    build_slice_cache(cases, preprocessor, cache)
    assert _files(old_folder) == ["notes.txt"]  # not the cache's: left, and the folder with it
    assert len(_files(new_folder)) == 6
    (old_folder / "notes.txt").unlink()
    build_slice_cache(cases, preprocessor, cache)  # reused entries: an emptied older folder is removed too
    assert [p.name for p in cache.iterdir()] == [new_folder.name]


def test_a_format_3_cache_goes_but_not_another_data_sets_entry_nor_a_current_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(oblique, "SHAPE_ZYX", (4, 24, 24))
    (case,) = [oblique._case(tmp_path / "data", 0.0, name="c")[0]]
    (other,) = [oblique._case(tmp_path / "other", 0.0, name="c", seed=1)[0]]  # same case id, other files
    preprocessor = SlicePreprocessor(oblique._config())
    coarser = SlicePreprocessor(oblique._config(target_spacing_mm=2.0))  # another current cache in the same folder
    cache = tmp_path / "cache"
    build_slice_cache([case, other], preprocessor, cache)
    build_slice_cache([case], coarser, cache)
    spatial = spatial_settings_of(preprocessor.config.to_dict())
    current = cache / cache_key(spatial, None, "aligned")
    # a format-3 cache of both data sets, as those versions named entries (the case id alone) and keyed them
    old_folder = cache / _format_3_key(spatial)
    old_folder.mkdir()
    for source in (case, other):
        stem = slice_cache._entry_name(source)
        target = slice_cache._safe_name("c") if source is case else slice_cache._entry_name(other)
        for suffix in slice_cache.ENTRY_SUFFIXES:
            shutil.copy(current / f"{stem}{suffix}", old_folder / f"{target}{suffix}")
    other_before = sorted(p.name for p in old_folder.iterdir() if p.name.startswith(slice_cache._entry_name(other)))
    assert len(other_before) == 3
    elsewhere = {p: p.read_bytes() for p in cache.rglob("*.npy") if p.parent != old_folder}
    build_slice_cache([case], preprocessor, cache)
    assert sorted(p.name for p in old_folder.iterdir()) == other_before  # only this data set's case went
    assert all(p.read_bytes() == data for p, data in elsewhere.items())  # current caches untouched
    build_slice_cache([other], preprocessor, cache)
    assert not old_folder.exists()


def test_an_entry_of_another_library_version_is_made_again_and_a_reused_entry_says_its_warnings(tmp_path, monkeypatch,
                                                                                                caplog):
    """An entry was keyed on the cache format only: one made by 0.6.8 of a label its header's scale had zeroed
    (0.6.8 read it as all background; later versions refuse it) was reused by 0.6.15, which trained on it without a
    word; and a reused entry said none of the warnings its case gave when it was cached (a label without liver or
    tumor, warned of by the run that cached it only). Entries record the library version and their case's warnings
    (the data audit, 1 Dec 2026)."""
    import logging

    from LiverTumorSegLib.training import datasets

    monkeypatch.setattr(oblique, "SHAPE_ZYX", (4, 24, 24))
    (case,) = [oblique._case(tmp_path / "data", 0.0, name="c")[0]]
    preprocessor = SlicePreprocessor(oblique._config())
    cache = tmp_path / "cache"
    built = []
    real = slice_cache.load_case

    def load_and_warn(*args, **kwargs):
        built.append(1)
        logging.getLogger("LiverTumorSegLib.training.datasets").warning("warning: the case's own warning")
        return real(*args, **kwargs)

    monkeypatch.setattr(slice_cache, "load_case", load_and_warn)
    build_slice_cache([case], preprocessor, cache)
    (sidecar,) = cache.rglob("*.json")
    meta = json.loads(sidecar.read_text())
    assert meta["warnings"][0] == "warning: the case's own warning" and meta["library_version"]
    datasets._WARNED_CASES.clear()  # another process
    with caplog.at_level(logging.WARNING):
        build_slice_cache([case], preprocessor, cache)
    assert built == [1] and "the case's own warning" in caplog.text  # reused, and said again
    sidecar.write_text(json.dumps(dict(meta, library_version="0.6.8")))
    build_slice_cache([case], preprocessor, cache)
    assert built == [1, 1]  # another version's entry is made again
