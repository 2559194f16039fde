"""A disk cache of preprocessed (spatially forwarded) cases, memory-mapped so epochs never re-read NIfTI.

Per case the cache holds ``hu`` ``(z, H, W)`` float32 HU on the network grid (after
``SlicePreprocessor.spatial_forward``), ``labels`` ``(z, H, W)`` uint8 (nearest-neighbour
``labels_forward``; on an oblique CT's patient-aligned grid :data:`~.labels.IGNORE_LABEL` outside its footprint) and a JSON sidecar (source files, sizes, spacings, liver and tumor slice indices, the
SHA-256 of the canonical CT's voxels, :func:`~.datasets.voxel_digest`, which finds one scan saved as two files, and
the ``resampling_fill`` found, or null). A CT in HU with a resampling's fill outside its original field of view
(:mod:`~..inference.resampling_fill`, SimpleITK's default 0 HU) is cached with -1024 HU there, as ``segment`` gives
it to the network: read as it is, the network learned tissue labelled background there; each such case is logged
with the fill's volume (mL) whenever the cache is built or reused.
Entries are keyed by the spatial preprocessing settings and the label map, named by the case id and its files'
paths (two data sets with the same case ids share a cache folder without replacing each other's entries), and
rebuilt when the source files change (size, modification and status-change time, inode; for a DICOM folder, every
file's; for a .mhd or .nhdr header, its data file's too), when the entry was made with ``allow_non_hu`` and the
current run is stricter (the CT check runs again), and when an entry is damaged (an unreadable sidecar, arrays of
another shape or type). Files are written to a temporary name
unique to the writer and renamed, so an interrupted build never leaves a half-written entry and two runs filling
one cache do not take each other's temporary files. A case cached again in a new cache format (:data:`CACHE_VERSION`)
has its older format's entry removed (:func:`remove_older_entries`: only the files that cache wrote for it, named by
its key and the case, and the key folder once empty), so a format change no longer leaves the old cache on disk.
"""
import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError, option_hint
from ..fileutil import atomic_output
from ..inference.body_size import body_diameter_mm
from .datasets import Case, load_case, voxel_digest
from .labels import IGNORE_LABEL, organ

_log = logging.getLogger(__name__)

CACHE_VERSION = 7  # 2: shrunk labels take the largest bilinear share (were nearest: half a pixel off at 2:1); 3: a
# resampling's fill outside the original field of view is cached as -1024 HU, as segment gives it to the network;
# 4: an oblique CT is cached on segment's patient-aligned grid (oblique_grid "aligned"; it was cached as stored);
# 5: on that grid, the labels outside the CT's footprint are IGNORE_LABEL (were background); axial CTs as before;
# 6: an oblique CT with pixels finer than that grid's is filtered in-plane before it is resampled onto it
# (axis_aligned.in_plane_antialias, as segment does since 0.6.23); axial CTs as before; 7: its labels onto that grid
# are filtered as its HU are (axis_aligned.back_antialias; also 0.6.23: caches of format 6 were built before it)

OBLIQUE_GRIDS = ("aligned", "stored")
"""Training's ``oblique_grid``: ``aligned`` (default) caches a CT turned more than
:data:`~..inference.axis_aligned.OBLIQUE_THRESHOLD_DEGREES` against the patient's axes on the patient-aligned grid
``segment`` gives the network (:func:`aligned_network_ct`); ``stored`` caches its own (oblique) slices, as versions
before 0.6.6's cache format 4 did."""


@dataclass
class CachedCase:
    """One cached case. ``hu``/``labels`` are read-only memory maps ``(z, H, W)``; ``spacing_zyx`` is the
    network-grid voxel size in mm; ``native_spacing_zyx`` the canonical CT's; ``voxel_sha256`` the canonical CT's
    :func:`~.datasets.voxel_digest`; ``body_diameter_mm`` the canonical CT's body size
    (:func:`~..inference.body_size.body_diameter_mm`; None where the image or a round field of view cuts the body);
    ``resampling_fill`` the :meth:`~..inference.resampling_fill.ResamplingFill.record` of the fill cached as
    -1024 HU, or None; ``network_grid`` the patient-aligned grid an oblique CT was cached on
    (:meth:`~..inference.axis_aligned.AlignedGrid.record` with ``obliquity_degrees``), or None: its own grid."""

    case_id: str
    patient_id: str
    hu_path: str
    labels_path: str
    spacing_zyx: Tuple[float, float, float]
    native_spacing_zyx: Tuple[float, float, float]
    liver_slices: List[int]
    tumor_slices: List[int]
    num_slices: int
    voxel_sha256: str = ""
    _hu: Any = None
    _labels: Any = None
    body_diameter_mm: Optional[float] = None
    resampling_fill: Optional[Dict[str, Any]] = None
    network_grid: Optional[Dict[str, Any]] = None

    @property
    def hu(self) -> np.ndarray:
        if self._hu is None:
            self._hu = np.load(self.hu_path, mmap_mode="r")
        return self._hu

    @property
    def labels(self) -> np.ndarray:
        if self._labels is None:
            self._labels = np.load(self.labels_path, mmap_mode="r")
        return self._labels

    def __getstate__(self) -> Dict[str, Any]:  # DataLoader workers reopen the memory maps themselves
        state = dict(self.__dict__)
        state["_hu"] = None
        state["_labels"] = None
        return state


def cache_key(spatial_settings: Dict[str, Any], label_map: Optional[Dict], oblique_grid: str = "aligned",
              version: Optional[int] = None) -> str:
    """Short hash of everything that changes the cached arrays. ``version``: the cache format (default
    :data:`CACHE_VERSION`); of a format before 4, the key as those versions made it (without ``oblique_grid``)."""
    version = CACHE_VERSION if version is None else int(version)
    keyed = {"v": version, "spatial": spatial_settings,
             "label_map": {str(k): int(v) for k, v in (label_map or {}).items()}}
    if version >= 4:  # format 4 added oblique_grid to the key
        keyed["oblique_grid"] = str(oblique_grid)
    text = json.dumps(keyed, sort_keys=True)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def older_key_folders(cache_dir: Path, spatial_settings: Dict[str, Any], label_map: Optional[Dict],
                      oblique_grid: str) -> List[Path]:
    """The key folders in ``cache_dir`` that versions of an older cache format (1 to :data:`CACHE_VERSION` - 1)
    made for these settings: no version of this one reads them again. Formats 1-3 cached every CT as stored (one
    key for either ``oblique_grid``); format 4's key holds ``oblique_grid``."""
    keys = {cache_key(spatial_settings, label_map, oblique_grid, version) for version in range(1, CACHE_VERSION)}
    return [folder for folder in (Path(cache_dir) / key for key in sorted(keys))
            if folder.is_dir() and not folder.is_symlink()]


def _older_entry_stems(case: Case) -> List[str]:
    """The names an older cache format gave ``case``'s entry: :func:`_entry_name` (its id and files' paths), and
    :func:`_safe_name` of its id alone (versions before entries were named by the files' paths too)."""
    return [_entry_name(case), _safe_name(case.case_id)]


def _entry_of(case: Case, meta_path: Path, by_paths: bool) -> bool:
    """Whether the older cache entry with sidecar ``meta_path`` is ``case``'s: its sidecar names the case id and
    its image and label files; an entry named by the files' paths (``by_paths``) whose sidecar is gone (a build
    interrupted between its files) is the case's by its name."""
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return by_paths
    except (OSError, ValueError):
        return False
    source = meta.get("source") if isinstance(meta, dict) else None
    return (isinstance(source, dict) and meta.get("case_id") == case.case_id
            and source.get("image") == case.image_path and source.get("label") == case.label_path)


def remove_older_entries(case: Case, folders: Sequence[Path]) -> int:
    """Remove ``case``'s entry (its :data:`ENTRY_SUFFIXES` files, nothing else) from each older format's key
    folder in ``folders`` (:func:`older_key_folders`), and such a folder once it is empty; the bytes freed. Before,
    a format change cached every case again beside the old entries, which stayed on disk for good (a data set's
    cache twice over). Files another program or the user put there, and other data sets' entries (other files'
    paths), are left; a file that cannot be removed (a read-only cache) is left too."""
    freed = 0
    for folder in folders:
        for stem in _older_entry_stems(case):
            paths = entry_paths(folder, stem)
            if not any(path.is_file() for path in paths) or not _entry_of(case, paths[0], stem == _entry_name(case)):
                continue
            for path in paths:
                try:
                    size = path.stat().st_size
                    path.unlink()
                    freed += size
                except OSError:  # gone already (another rank removed it) or not ours to remove
                    pass
        try:
            folder.rmdir()  # only when empty: whatever else it holds keeps it
        except OSError:
            pass
    return freed


def _file_signature(path: Path) -> List[int]:
    """Size, modification and status-change times (ns) and inode of a file: ``cp -p`` or an editor restoring
    an older modification time still changes the status-change time or the inode."""
    st = path.stat()
    return [int(st.st_size), int(st.st_mtime_ns), int(st.st_ctime_ns), int(st.st_ino)]


def _files_of(path: Path) -> List[Path]:
    """The file itself, followed by the data file where it is a NRRD or MetaImage header keeping its voxels in
    another file (a .mhd's .raw, a .nhdr's data file), or by the other files of its folder where it is one file of a
    DICOM series (whose whole series is read); or every file below a folder (a DICOM series), sorted. Of a .mhd only
    the header was looked at: its .raw replaced by another scan's kept serving the old cached slices, and a resume
    did not see the image change; of a CSV cell naming one DICOM file only that slice was, and the other slices
    (their labels blanked, 300 HU added) changed unseen (the training data audit)."""
    if path.is_dir():
        return sorted(f for f in path.rglob("*") if f.is_file())
    from ..fileutil import full_suffix
    from ..io.formats import ITK_SUFFIXES

    if full_suffix(path) in ITK_SUFFIXES:
        from ..io.itk import detached_data_file

        data = detached_data_file(path)
        if data is not None and data.is_file():
            return [path, data]
    from ..io.formats import may_be_dicom_file

    if path.is_file() and may_be_dicom_file(path):  # one file of a DICOM series names its whole series, which is read
        try:
            others = sorted(f for f in path.parent.iterdir() if f.is_file() and f != path)
        except OSError:
            others = []
        return [path] + others
    return [path]


def _signed_files(path: Path) -> List[Tuple[Path, List[int]]]:
    """Each of :func:`_files_of` ``path`` with its :func:`_file_signature`: one walk of a folder (a DICOM series)
    and one stat per file, for everything a training start needs of them (signature, size, the files to hash)."""
    return [(f, _file_signature(f)) for f in _files_of(path)]


def _signature_of(path: Path, signed: Sequence[Tuple[Path, List[int]]]) -> Any:
    """:func:`_path_signature` of ``path`` from its :func:`_signed_files` ``signed``."""
    if not path.is_dir():  # a header with its data file: both signatures
        return signed[0][1] if len(signed) == 1 else [signature for _, signature in signed]
    digest = hashlib.sha1()
    for f, signature in signed:
        digest.update(json.dumps([str(f.relative_to(path))] + signature).encode("utf-8"))
    return digest.hexdigest()


def _path_signature(path: str) -> Any:
    """:func:`_file_signature` of a file, or a digest of every file's name and signature in a folder (DICOM: one
    slice replaced by an older copy was missed)."""
    return _signature_of(Path(path), _signed_files(Path(path)))


def _source_signature(case: Case, signatures: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """What a cache entry records of its source files. ``signatures``: ``{path: _path_signature(path)}`` already
    taken (:func:`data_fingerprint`'s), so that a DICOM folder is not walked and stat'ed again."""
    known = signatures or {}

    def signature(path: str) -> Any:
        return known[path] if path in known else _path_signature(path)

    return {"image": case.image_path, "label": case.label_path, "image_sig": signature(case.image_path),
            "label_sig": signature(case.label_path)}


def _content_fingerprint(path: str, files: Optional[Sequence[Path]] = None) -> str:
    """SHA-256 of a file's bytes (``package.file_sha256``; of a header and its data file, both files' SHA-256), or
    of every file's relative name and SHA-256 in a folder (a DICOM series). ``files``: the path's :func:`_files_of`,
    when the caller listed them already."""
    from ..package import file_sha256

    p = Path(path)
    if not p.is_dir():
        listed = _files_of(p) if files is None else list(files)
        if len(listed) == 1:
            return file_sha256(p)
        # a header and its data file (a .mhd and its .raw): both contents, in that order
        return hashlib.sha256("\n".join(file_sha256(f) for f in listed).encode("ascii")).hexdigest()
    digest = hashlib.sha256()
    # names as POSIX text in POSIX order: Windows sorts paths without case and writes '\\', so the same series
    # copied to another system hashed differently and a resume there was refused as "image changed"
    for name, f in sorted((f.relative_to(p).as_posix(), f) for f in (_files_of(p) if files is None else files)):
        digest.update(f"{name}\0{file_sha256(f)}\n".encode("utf-8"))
    return digest.hexdigest()


CONTENT_HASHES_NAME = "label_hashes.json"
"""The file in the cache folder that keeps the content hash of each image and label (keyed by its path) with the
stat signature it was taken at. Named for what it first held: caches made before images were hashed keep their
label hashes, and older versions still count the file as part of the cache (:func:`holds_finished_entries`)."""


def _read_content_hashes(store: Optional[Path]) -> Dict[str, Any]:
    """``{path: {"signature": stat signature, "sha256": hex digest}}`` kept in ``store``; empty when there is none
    or it cannot be read (everything is hashed again)."""
    if store is None or not store.is_file():
        return {}
    try:
        known = json.loads(store.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def _keep_content_hashes(store: Path, hashes: Dict[str, Any]) -> None:
    """Write ``hashes`` to ``store``, making its folder first: a fresh run hashes before its cache is built, and
    kept nothing, so its first ``--resume`` hashed the whole data set again. A folder holding only this file is not
    a finished cache (:func:`holds_finished_entries`): a run failing before it cached a case is still cleared.
    Where it cannot be written (a read-only cache), nothing is kept and the files are hashed again next time."""
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(store, overwrite=True) as tmp:
            tmp.write_text(json.dumps(hashes, sort_keys=True), encoding="utf-8")
    except (OSError, InputError):  # atomic_output's write check says 'not writable' as an InputError
        pass


def _kept_or_new_hash(path: str, known: Dict[str, Any], taken: Dict[str, Any], sizes: Dict[str, int]) -> str:
    """:func:`_content_fingerprint` of ``path``: the one ``known`` keeps for the file's current stat signature
    (:func:`_path_signature`), else hashed now. Recorded in ``taken`` (a path listed twice is hashed once), its
    size in bytes (a folder: the sum of all its files') in ``sizes``. A folder (a DICOM series) is walked and its
    files stat'ed once for all three (it was walked again for the hash and once more for the size)."""
    if path not in taken:
        signed = _signed_files(Path(path))
        signature = _signature_of(Path(path), signed)  # a list of ints or a hex string: as JSON gives it back
        entry = known.get(path)
        kept = entry.get("sha256") if isinstance(entry, dict) and entry.get("signature") == signature else None
        sha256 = kept if isinstance(kept, str) else _content_fingerprint(path, [f for f, _ in signed])
        taken[path] = {"signature": signature, "sha256": sha256}
        sizes[path] = sum(file_signature[0] for _, file_signature in signed)  # each file's st_size
    return taken[path]["sha256"]


def data_fingerprint(cases: Sequence[Case], cache_dir: Any = None,
                     signatures: Optional[Dict[str, Any]] = None) -> Dict[str, Dict[str, Any]]:
    """``{case id: {"label_sha256", "image_sha256", "image_bytes"}}``: what a resumed run compares with the
    interrupted one's (:func:`changed_files`), so that a label or an image replaced in place of a case's file
    (an uncompressed CT or a DICOM series of the same shape has the same size) is refused instead of trained on
    without a word. Hashes are :func:`_content_fingerprint` (SHA-256); copies of the same files elsewhere, or
    with other times, match. ``image_bytes`` is the image's size (a folder: all its files'), which checkpoints
    of older versions recorded instead of the image's hash.

    With ``cache_dir`` the hashes are kept in its :data:`CONTENT_HASHES_NAME` (the folder made when missing)
    beside the stat signature they were taken at, so a file is read again only when its signature changed: a
    resume, a cross-validation fold or a torchrun rank reads only what changed. The first start reads every
    image and label once: SHA-256 ran at about 1.4 GB/s here (a 200 MB file in 0.14 s, read from the page cache
    on a 2-core AMD EPYC), so 50 GB of CTs take about 40 s, longer where the disk reads slower than that.

    ``signatures``: a dict filled with each file's or folder's :func:`_path_signature` as taken here, for
    :func:`build_slice_cache` (which would otherwise walk and stat every file again)."""
    store = Path(cache_dir) / CONTENT_HASHES_NAME if cache_dir is not None else None
    known = _read_content_hashes(store)
    taken = {}  # type: Dict[str, Any]
    sizes = {}  # type: Dict[str, int]
    fingerprint = {case.case_id: {"label_sha256": _kept_or_new_hash(case.label_path, known, taken, sizes),
                                  "image_sha256": _kept_or_new_hash(case.image_path, known, taken, sizes),
                                  "image_bytes": sizes[case.image_path]} for case in cases}
    if signatures is not None:
        signatures.update({path: entry["signature"] for path, entry in taken.items()})
    if store is not None and any(known.get(path) != entry for path, entry in taken.items()):
        _keep_content_hashes(store, dict(known, **taken))
    return fingerprint


def changed_files(saved_entry: Any, entry: Dict[str, Any]) -> List[str]:
    """Which of a case's files (``"label"``, ``"image"``) differ between an interrupted run's
    :func:`data_fingerprint` entry ``saved_entry`` (from its checkpoint) and this run's ``entry``. Checkpoints
    of older versions hold ``[label SHA-256, image bytes]`` and are compared on what they hold: the label's hash
    and the image's size. An entry of no known form (or none) counts as both changed."""
    if isinstance(saved_entry, dict):
        saved_label, saved_image, image_now = (saved_entry.get("label_sha256"), saved_entry.get("image_sha256"),
                                               entry["image_sha256"])
    elif isinstance(saved_entry, (list, tuple)) and len(saved_entry) == 2:
        saved_label, saved_image, image_now = saved_entry[0], saved_entry[1], entry["image_bytes"]
    else:
        return ["label", "image"]
    differing = {"label": saved_label != entry["label_sha256"], "image": saved_image != image_now}
    return [name for name, differs in differing.items() if differs]


def _safe_name(case_id: str) -> str:
    """File-name stem of a case's cache entry: its id with unsafe characters replaced, plus a hash of the exact
    id, so that ids differing only in case ("Case1", "case1": one file on Windows and macOS) or in a replaced
    character ("a/b", "a_b") never share an entry."""
    readable = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in case_id)
    return f"{readable}-{hashlib.sha1(case_id.encode('utf-8')).hexdigest()[:8]}"


def _entry_name(case: Case) -> str:
    """File-name stem of a case's cache entry: :func:`_safe_name` of its id plus a hash of its image and label
    paths (absolute), so that two data sets with the same case ids (``liver_0`` of two copies of a data set with
    other labels) sharing one ``--cache-dir`` each keep their own entry. One name for both made the second run
    replace the first one's arrays under it, and the first run's DataLoader workers, which open the memory maps
    by path, then trained on the other data set's slices with its own slice counts and liver slice lists."""
    sources = "\0".join(os.path.abspath(path) for path in (case.image_path, case.label_path))
    return f"{_safe_name(case.case_id)}-{hashlib.sha1(sources.encode('utf-8')).hexdigest()[:8]}"


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """``array`` saved to ``path`` through :func:`fileutil.atomic_output` (a temporary name no other writer uses;
    a killed writer's leftovers are removed by a later run)."""
    with atomic_output(path, overwrite=True) as tmp:
        np.save(str(tmp), array)


ENTRY_SUFFIXES = (".json", ".hu.npy", ".labels.npy")
"""A cached case's three files in its key folder: metadata, HU on the network grid, labels."""


def entry_paths(folder: Path, name: str) -> Tuple[Path, Path, Path]:
    """``(metadata, HU, labels)`` paths of the cached case ``name`` in the key folder ``folder``."""
    meta, hu, labels = (folder / f"{name}{suffix}" for suffix in ENTRY_SUFFIXES)
    return meta, hu, labels


def holds_finished_entries(cache_dir: Path) -> bool:
    """Whether ``cache_dir`` is a slice cache (``<key>/<case>`` + :data:`ENTRY_SUFFIXES`) holding at least one
    finished case and nothing else (a failed training run leaves it for the next: trainer.remove_if_no_checkpoint)."""
    if not cache_dir.is_dir() or cache_dir.is_symlink():
        return False
    finished = False
    for key_folder in cache_dir.iterdir():
        if key_folder.name == CONTENT_HASHES_NAME and key_folder.is_file():  # data_fingerprint's, part of the cache
            continue
        if not key_folder.is_dir():
            return False
        for entry in key_folder.iterdir():
            if not entry.name.endswith(ENTRY_SUFFIXES):
                return False
            if entry.name.endswith(ENTRY_SUFFIXES[0]):
                finished = finished or all(path.is_file() for path in entry_paths(
                    key_folder, entry.name[:-len(ENTRY_SUFFIXES[0])]))
    return finished


def _usable_entry(meta_path: Path, hu_path: Path, lab_path: Path, signature: Dict[str, Any],
                  allow_non_hu: bool) -> Optional[Dict[str, Any]]:
    """The sidecar of a cache entry that can be used as it is, else None (rebuild): same source, made at least as
    strictly (an entry made with ``allow_non_hu`` skipped the CT check a stricter run must make), readable, with
    arrays of the recorded shape and type (a half-written or truncated file is rebuilt, not an error)."""
    if not (meta_path.is_file() and hu_path.is_file() and lab_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("source") != signature or (meta.get("allow_non_hu", True) and not allow_non_hu):
            return None
        if meta.get("library_version") != _library_version():  # another version's reading and checks: an entry
            return None  # 0.6.8 made of a label its scale had zeroed trained as background under 0.6.15
        shape = tuple(int(n) for n in meta["shape_zhw"])
        for path, dtype in ((hu_path, np.float32), (lab_path, np.uint8)):
            array = np.load(str(path), mmap_mode="r")
            if array.shape != shape or array.dtype != dtype:
                return None
        # a missing key: rebuild (entries cached before the voxel digest or the body's size was taken are cached
        # again, once)
        for key in ("spacing_zyx", "native_spacing_zyx", "liver_slices", "tumor_slices", "case_id", "voxel_sha256",
                    "body_diameter_mm", "resampling_fill", "network_grid"):
            meta[key]  # noqa: B018
        return meta
    except (OSError, ValueError, KeyError, TypeError):
        return None


def slice_indices(labels_zhw: np.ndarray) -> Tuple[List[int], List[int]]:
    """(slices holding any liver or tumor, slices holding tumor) of a ``(z, H, W)`` label stack."""
    flat = labels_zhw.reshape(labels_zhw.shape[0], -1)
    liver = np.flatnonzero(organ(flat).any(axis=1)).tolist()  # IGNORE_LABEL is no liver
    tumor = np.flatnonzero((flat == 2).any(axis=1)).tolist()
    return liver, tumor


def build_slice_cache(cases: Sequence[Case], preprocessor, cache_dir, label_map: Optional[Dict] = None,
                      spatial_settings: Optional[Dict[str, Any]] = None,
                      log: Optional[Callable[[str], None]] = None, allow_non_hu: bool = False,
                      signatures: Optional[Dict[str, Any]] = None,
                      oblique_grid: str = "aligned") -> List[CachedCase]:
    """Cache every case (reusing valid entries) and return their :class:`CachedCase` records.

    ``preprocessor``: a ``SlicePreprocessor`` (``spatial_forward`` / ``labels_forward``).
    ``spatial_settings``: the settings that affect the spatial forward (part of the cache key; default:
    the preprocessor config's ``to_dict()``).
    ``signatures``: the source files' signatures :func:`data_fingerprint` took (``{path: signature}``); a path
    not in it is stat'ed here.
    ``oblique_grid``: :data:`OBLIQUE_GRIDS` (part of the cache key); each case cached on a patient-aligned grid is
    named in ``log``, built or reused.
    """
    if oblique_grid not in OBLIQUE_GRIDS:
        raise InputError(f"Option oblique_grid must be one of {', '.join(OBLIQUE_GRIDS)} (got {oblique_grid!r}).")
    if spatial_settings is None:
        spatial_settings = spatial_settings_of(preprocessor.config.to_dict())
    folder = Path(cache_dir) / cache_key(spatial_settings, label_map, oblique_grid)
    folder.mkdir(parents=True, exist_ok=True)
    older = older_key_folders(Path(cache_dir), spatial_settings, label_map, oblique_grid)
    out = []
    freed, replaced = 0, 0
    for case in cases:
        cached = _cache_one(case, preprocessor, folder, label_map, log, allow_non_hu, signatures, oblique_grid)
        if older:  # built or reused here (a run stopped before removing them): the older format's entry goes
            removed = remove_older_entries(case, older)
            freed, replaced = freed + removed, replaced + (removed > 0)
        if log and cached.resampling_fill:  # built or reused: the run's log names every such case
            log(f"case {case.case_id}: {resampling_fill_note(cached.resampling_fill)}")
        if log and cached.network_grid:
            log(f"case {case.case_id}: {network_grid_note(cached.network_grid)}")
        out.append(cached)
    if log and replaced:
        log(f"removed {replaced} case(s)' entries of an older slice cache format from '{cache_dir}' "
            f"({freed / 1e6:.1f} MB freed; cached again in format {CACHE_VERSION})")
    return out


def resampling_fill_cases(train_cached: Sequence[CachedCase],
                          val_cached: Sequence[CachedCase] = ()) -> Dict[str, Dict[str, Any]]:
    """A package's ``training.cases_with_resampling_fill``: per case id whose CT held a resampling's fill (cached as
    -1024 HU), its ``resampling_fill`` record (``values_hu``, ``volume_ml``, ``read_as_hu``) and ``used_for``
    (``training`` or ``validation``); ``{}`` when no case held one. Only the training log named them before."""
    return _cases_with_record(train_cached, val_cached, "resampling_fill")


def aligned_grid_cases(train_cached: Sequence[CachedCase],
                       val_cached: Sequence[CachedCase] = ()) -> Dict[str, Dict[str, Any]]:
    """A package's ``training.cases_on_aligned_grid``: per case id of an oblique CT cached on segment's
    patient-aligned grid, its ``network_grid`` record (``kind``, ``shape_zyx``, ``spacing_mm``, ``origin_lps_mm``,
    ``obliquity_degrees``) and ``used_for`` (``training`` or ``validation``); ``{}`` when there was none."""
    return _cases_with_record(train_cached, val_cached, "network_grid")


def _cases_with_record(train_cached: Sequence[CachedCase], val_cached: Sequence[CachedCase],
                       record: str) -> Dict[str, Dict[str, Any]]:
    """Per case id whose :class:`CachedCase` ``record`` attribute is set: that record with ``used_for``
    (``training`` or ``validation``)."""
    found = {}
    for used_for, cached in (("training", train_cached), ("validation", val_cached)):
        for case in cached:
            if getattr(case, record):
                found[case.case_id] = dict(getattr(case, record), used_for=used_for)
    return found


def network_grid_note(record: Dict[str, Any]) -> str:
    """The training log's words for a case cached on a patient-aligned grid (``network_grid``)."""
    return (f"its CT is turned {float(record['obliquity_degrees']):.1f} degrees against the patient's axes; it is "
            f"resampled onto the patient-aligned grid segment gives the network "
            f"({' x '.join(str(int(n)) for n in record['shape_zyx'])} voxels, z y x; labels by their largest share), "
            f"as segment runs on it")


def aligned_network_ct(volume: Any, labels: np.ndarray, target_spacing_mm: Optional[float]) -> Tuple[Any, Any, Any]:
    """``(CT, labels, network_grid record)`` of a training CT ``volume`` (canonical, as :func:`_network_ct` gives
    it) with its ``labels``, on the patient-aligned grid ``segment`` gives the network
    (:meth:`~..inference.segmenter.Segmenter._aligned_grid`: the same :func:`~..inference.axis_aligned.aligned_grid`
    and :func:`~..inference.axis_aligned.resampled_onto`, beyond the CT's grid its nearest edge voxel) when it is
    turned more than :data:`~..inference.axis_aligned.OBLIQUE_THRESHOLD_DEGREES` against the patient's axes; labels
    by each label's largest trilinear share (:func:`~..inference.axis_aligned.labels_back`, the nearest edge voxel's
    label beyond the CT's grid, as its HU there). Any other CT: ``(volume, labels, None)``, untouched."""
    from ..inference import axis_aligned
    from ..orientation import obliquity_degrees

    degrees = obliquity_degrees(volume.geometry.direction_matrix)
    if not degrees > axis_aligned.OBLIQUE_THRESHOLD_DEGREES:
        return volume, labels, None
    grid = axis_aligned.aligned_grid(volume.geometry, volume.shape_zyx,
                                     axis_aligned.aligned_spacing_xyz(volume, target_spacing_mm))
    on_grid = axis_aligned.resampled_onto(volume, grid)
    on_grid_labels = axis_aligned.labels_back(np.asarray(labels, dtype=np.uint8), volume.geometry, grid.geometry,
                                              grid.shape_zyx)
    return on_grid, on_grid_labels, dict(grid.record(), obliquity_degrees=round(float(degrees), 2))


def resampling_fill_note(record: Dict[str, Any]) -> str:
    """The training log's words for a case's ``resampling_fill``
    (:meth:`~..inference.resampling_fill.ResamplingFill.record`)."""
    values = " and ".join(f"{float(v):g}" for v in record["values_hu"])
    return (f"{record['volume_ml']:.0f} mL of its CT hold exactly {values} HU in regions that reach the edge of its "
            f"slices, a resampling's fill outside the original field of view; the network is given "
            f"{record['read_as_hu']:g} HU (air) there, as segment gives it")


def _network_ct(volume: Any) -> Tuple[Any, Any]:
    """``(the CT the network learns from, the ResamplingFill found or None)`` for a canonical training CT
    ``volume``: a CT in HU with a resampling's fill (:func:`~..inference.resampling_fill.find_resampling_fill`)
    gets -1024 HU there on a copy, as ``segment`` gives it to the network; any other CT (one let through by
    ``allow_non_hu`` too, as in ``segment``) is given as it is."""
    from ..inference.resampling_fill import fill_replaced
    from ..validation import not_hu_reason

    return (volume, None) if not_hu_reason(volume) is not None else fill_replaced(volume)


def _library_version() -> str:
    from .. import __version__

    return str(__version__)


class _KeptWarnings(logging.Handler):
    def __init__(self, into: List[str]) -> None:
        super().__init__(level=logging.WARNING)
        self.into, self.thread = into, threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread and record.levelno >= logging.WARNING:
            self.into.append(record.getMessage())


@contextlib.contextmanager
def _warnings_kept(into: List[str]):
    """The library's warnings logged in this thread within the block, appended to ``into`` (their texts): a cache
    entry keeps those of reading its case, which a later run that reuses the entry says again."""
    handler = _KeptWarnings(into)
    logger = logging.getLogger("LiverTumorSegLib")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _warn_again(case: Case, warnings: Sequence[str]) -> None:
    """Log the warnings an entry's case gave when it was cached (a reused entry said nothing: a label without liver
    or tumor was warned of by the run that cached it only), once per process and text."""
    from .datasets import _WARNED_CASES

    for text in warnings:
        text = str(text)
        bare = text[len("warning: "):] if text.startswith("warning: ") else text  # load_case's key for it
        if (str(case.image_path), text) not in _WARNED_CASES and (str(case.image_path), bare) not in _WARNED_CASES:
            _WARNED_CASES.update({(str(case.image_path), text), (str(case.image_path), bare)})
            _log.warning("%s", text)


def _cache_one(case: Case, preprocessor, folder: Path, label_map: Optional[Dict],
               log: Optional[Callable[[str], None]], allow_non_hu: bool = False,
               signatures: Optional[Dict[str, Any]] = None, oblique_grid: str = "aligned") -> CachedCase:
    name = _entry_name(case)
    meta_path, hu_path, lab_path = entry_paths(folder, name)
    signature = _source_signature(case, signatures)
    meta = _usable_entry(meta_path, hu_path, lab_path, signature, allow_non_hu)
    if meta is not None:
        _warn_again(case, meta.get("warnings") or [])
        return _record(case, meta, hu_path, lab_path)
    _check_cache_writable(folder, case)
    if log:
        log(f"caching {case.case_id} ({Path(case.image_path).name})")
    warned = []  # type: List[str]
    with _warnings_kept(warned):
        volume, labels = load_case(case, label_map, allow_non_hu, aligned_for_model=oblique_grid == "aligned")
    network_ct, fill = _network_ct(volume)
    grid_record = None
    network_labels = labels
    if oblique_grid == "aligned":  # after the fill is air, as segment resamples the CT it gives the network
        config = preprocessor.config
        target = None if getattr(config, "target_size", None) else getattr(config, "target_spacing_mm", None)
        network_ct, network_labels, grid_record = aligned_network_ct(network_ct, labels, target)
    inside = None if grid_record is None else _footprint_on_grid(network_ct, volume)
    hu_net, info = preprocessor.spatial_forward(network_ct.array, network_ct.spacing_zyx)
    spacing_net = list(network_spacing(info, network_ct, hu_net.shape))
    del network_ct
    lab_net = preprocessor.labels_forward(network_labels, info)
    del network_labels
    if inside is not None:  # outside the CT's footprint (and the padding beyond the grid): no loss counts it
        lab_net[preprocessor.labels_forward(inside, info) == 0] = IGNORE_LABEL
    del inside
    hu_net = np.ascontiguousarray(hu_net, dtype=np.float32)
    lab_net = np.ascontiguousarray(lab_net, dtype=np.uint8)
    liver, tumor = slice_indices(lab_net)
    meta = {"source": signature, "case_id": case.case_id, "patient_id": case.patient_id,
            "shape_zhw": list(hu_net.shape), "spacing_zyx": spacing_net,
            "native_spacing_zyx": list(volume.spacing_zyx), "liver_slices": liver, "tumor_slices": tumor,
            "allow_non_hu": bool(allow_non_hu), "voxel_sha256": voxel_digest(volume.array),
            # the package records it (segment's body-size scaling): on the CT as read, where the image's side
            # and a round field of view still show where they cut the body (the network grid's body crop and
            # padding hide it: a cut body's part was recorded as its size)
            "body_diameter_mm": body_diameter_mm(volume.array, volume.geometry,
                                                 None if fill is None else fill.mask)["diameter_mm"],
            "resampling_fill": None if fill is None else fill.record(), "network_grid": grid_record,
            "library_version": _library_version(), "warnings": warned}
    _save_npy_atomic(hu_path, hu_net)
    _save_npy_atomic(lab_path, lab_net)
    with atomic_output(meta_path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(meta), encoding="utf-8")
    return _record(case, meta, hu_path, lab_path)


def _footprint_on_grid(grid_ct: Any, volume: Any) -> np.ndarray:
    """uint8 ``(z, y, x)`` on ``grid_ct``'s patient-aligned grid: 1 within the footprint of the canonical CT
    ``volume`` (:func:`~..inference.axis_aligned.footprint`), where ``segment`` brings the network's labels back onto
    the CT; 0 where the grid holds only the CT's edge voxels repeated and ``segment`` labels nothing."""
    from ..inference.axis_aligned import footprint

    return footprint(grid_ct.geometry, grid_ct.shape_zyx, volume.geometry, volume.shape_zyx).view(np.uint8)


def _check_cache_writable(folder: Path, case: Case) -> None:
    """InputError, before ``case`` is read, when the cache ``folder`` cannot take its entry (a file is created and
    removed there). A cache another user built, read-only here, serves the cases it holds; a case it lacked failed
    after its CT was read, with "Output folder '.../cache/KEY' is not writable ...; choose another output location",
    which named neither the case nor the cache option."""
    try:
        handle, probe = tempfile.mkstemp(prefix=".livertumorseg-write-test.", dir=str(folder))
    except OSError as exc:
        raise InputError(f"Cannot cache case '{case.case_id}' ('{case.image_path}'): the slice cache folder "
                         f"'{folder}' holds no usable entry of it and cannot be written ({exc.strerror or exc}). Give "
                         f"a cache folder you can write to ({option_hint('--cache-dir', 'cache_dir')}; a read-only "
                         f"cache serves only the cases it holds), or fix that folder's permissions.") from None
    os.close(handle)
    os.unlink(probe)


def _record(case: Case, meta: Dict[str, Any], hu_path: Path, lab_path: Path) -> CachedCase:
    return CachedCase(case_id=case.case_id, patient_id=case.patient_id, hu_path=str(hu_path),
                      labels_path=str(lab_path), spacing_zyx=tuple(meta["spacing_zyx"]),
                      native_spacing_zyx=tuple(meta["native_spacing_zyx"]), liver_slices=list(meta["liver_slices"]),
                      tumor_slices=list(meta["tumor_slices"]), num_slices=int(meta["shape_zhw"][0]),
                      voxel_sha256=str(meta["voxel_sha256"]), body_diameter_mm=meta["body_diameter_mm"],
                      resampling_fill=meta["resampling_fill"], network_grid=meta["network_grid"])


def network_spacing(info, volume, shape_zhw: Sequence[int]) -> Tuple[float, float, float]:
    """Voxel size (z, y, x) in mm of the network grid described by a ``SpatialInfo``.

    z is never resampled; in-plane comes from ``info.net_spacing_yx`` (else the native spacing).
    """
    sz, sy, sx = volume.spacing_zyx
    net_yx = getattr(info, "net_spacing_yx", None)
    if net_yx is not None and len(net_yx) == 2:
        return (float(sz), float(net_yx[0]), float(net_yx[1]))
    return (float(sz), float(sy), float(sx))


SPATIAL_KEYS = ("target_spacing_mm", "target_size", "size_multiple", "crop_to_body", "crop_margin_mm",
                "body_threshold_hu", "pad_hu")


def spatial_settings_of(preprocessing_dict: Dict[str, Any]) -> Dict[str, Any]:
    """The part of a ``PreprocessingConfig.to_dict()`` that changes the spatial forward (the cache key)."""
    return {k: preprocessing_dict[k] for k in SPATIAL_KEYS if k in preprocessing_dict}
