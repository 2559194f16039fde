"""Safe output writing: temp file in the destination folder, then an atomic rename.

A cancelled or failed write never leaves a half-written file that looks complete, and an existing
output is kept unless ``overwrite=True``.
"""
import collections
import contextlib
import csv
import errno
import io
import logging
import os
import re
import stat
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import OutputExistsError, InputError, option_hint
from .training.interrupts import call_with_interrupts_held
from .processes import HOST_TAG_CHARACTERS, PROCESS_MARK, marked_elsewhere, marked_process_alive, process_mark

PathLike = Union[str, "os.PathLike[str]"]

log = logging.getLogger(__name__)


def written_suffix(path: PathLike) -> Tuple[str, str]:
    """``(full_suffix, the suffix as the name writes it, its letter case kept)``: ``X.Nii.Gz`` -> ``(".nii.gz",
    ".Nii.Gz")``."""
    name = Path(path).name
    suffix = full_suffix(path)
    return suffix, name[len(name) - len(suffix):]


def with_lower_suffix(path: PathLike) -> Path:
    """``path`` with its :func:`full_suffix` in lower case: ``X.Nii`` -> ``X.nii``."""
    path = Path(path)
    suffix, written = written_suffix(path)
    return path.with_name(path.name[:len(path.name) - len(written)] + suffix)


def full_suffix(path: PathLike) -> str:
    """Lower-case extension including compound ones: ``a.nii.gz`` -> ``.nii.gz``, ``b.seg.nrrd`` -> ``.seg.nrrd``."""
    name = Path(path).name.lower()
    for compound in (".nii.gz", ".seg.nrrd", ".tar.gz"):
        if name.endswith(compound):
            return compound
    return Path(name).suffix


def finite_json(value):
    """Copy of a JSON-able ``value`` with NaN/Inf floats replaced by None and numpy scalars made plain and paths as text, so
    ``json.dumps(..., allow_nan=False)`` gives strict JSON (NaN/Infinity are not JSON)."""
    import math

    from collections.abc import Mapping

    if isinstance(value, Mapping):
        return {str(k): finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def json_loads_noting_repeats(text: str) -> Tuple[Any, List[str]]:
    """``(json.loads(text), keys written twice in one object)``: json keeps a repeated key's last value without a
    word ('{"1": 1, "1": 2}' is {"1": 2}), so a caller that must refuse it (``--label-map``, train's JSON options)
    needs the list. ValueError for text that is not JSON, as json.loads; json.JSONDecodeError also for JSON that
    Python cannot read (arrays nested thousands deep, a number of more than 4300 digits), which raised
    RecursionError and a ValueError about sys.set_int_max_str_digits: 'internal error' in each caller."""
    import json

    repeated: List[str] = []

    def keep_repeats(items: List[Tuple[str, Any]]) -> dict:
        keys = [key for key, _ in items]
        repeated.extend(key for index, key in enumerate(keys) if key in keys[:index])
        return dict(items)

    try:
        return json.loads(text, object_pairs_hook=keep_repeats), repeated
    except RecursionError:
        raise json.JSONDecodeError("arrays or objects nested too deep to read", text, 0) from None
    except json.JSONDecodeError:
        raise
    except ValueError:  # the text's position is not known here: the document's start is named
        raise json.JSONDecodeError("a number of more digits than can be read (4300)", text, 0) from None


def yaml_loads_noting_repeats(text: str) -> Tuple[Any, List[str]]:
    """``(yaml.safe_load(text), keys written twice in one mapping)``: as :func:`json_loads_noting_repeats` for YAML,
    which also keeps a repeated key's last value without a word. yaml's own errors for text that is not YAML."""
    import yaml

    repeated: List[str] = []

    class RepeatNotingLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        keys: List[Any] = []
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in keys:
                repeated.append(str(key))
            keys.append(key)
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    RepeatNotingLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    loaded = yaml.load(text, Loader=RepeatNotingLoader)
    if expanded_size(loaded, MAX_EXPANDED_VALUES) > MAX_EXPANDED_VALUES:
        raise ValueError(f"its aliases (*name) expand to more than {MAX_EXPANDED_VALUES:,} values, more than any "
                         f"options file needs (an alias bomb); write the values out")
    return loaded, repeated


MAX_EXPANDED_VALUES = 1_000_000
"""The most values an options file may hold with its YAML aliases written out: 1.5 KB of nested aliases make a list
of 10^9, which every later step (checks, messages, the package's JSON record) writes out in full (the file-safety
audit: out of memory after a minute)."""


def expanded_size(value: Any, limit: int) -> int:
    """The number of values ``value`` holds with every shared list or mapping counted where it occurs (YAML aliases
    written out), each counted once per place; stops counting past ``limit`` (returns a number above it). Shared
    containers are sized once (memo by identity), so a nested alias bomb is sized in a few steps."""
    memo: Dict[int, int] = {}

    def size(item: Any, depth: int) -> int:
        if not isinstance(item, (list, tuple, dict)):
            return 1
        known = memo.get(id(item))
        if known is not None:
            return known
        if depth > 1000:  # deeper than any options file: counted as over the limit
            return limit + 1
        children = list(item.keys()) + list(item.values()) if isinstance(item, dict) else item
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if total > limit:
                break
        memo[id(item)] = total
        return total

    return size(value, 0)


def printable_path(path: PathLike) -> str:
    """``path`` as text safe to print: bytes that are not UTF-8 shown as ``\\xff``."""
    return os.fsencode(os.fspath(path)).decode("utf-8", "backslashreplace")


def check_path_encoding(path: PathLike, what: str = "Path") -> Path:
    """Refuse a path holding bytes that are not valid UTF-8: ITK cannot open such names (it aborted the
    whole process with SIGABRT), so they are refused before any work. A UTF-8 name that Python decoded in another
    file-name encoding (ASCII: a C or POSIX locale with ``PYTHONUTF8=0``) is refused saying so: it was told to
    rename its valid UTF-8 name "using UTF-8 characters only"."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        if _is_utf8(os.fsencode(os.fspath(path))):
            raise InputError(f"{what} '{printable_path(path)}' holds letters beyond ASCII, and Python reads file "
                             f"names as {sys.getfilesystemencoding()} here (a C or POSIX locale with PYTHONUTF8=0, "
                             f"or another locale that is not UTF-8); run it in a UTF-8 locale (LC_ALL=C.UTF-8) or "
                             f"with PYTHONUTF8=1.") from None
        raise InputError(f"{what} '{printable_path(path)}' contains bytes that are not valid UTF-8; rename it (or "
                         f"its folder) using UTF-8 characters only.") from None
    return Path(path)


def _is_utf8(data: bytes) -> bool:
    """Whether ``data`` is valid UTF-8."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


WINDOWS_RESERVED_NAMES = frozenset(["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
                                   + [f"{device}{digit}" for device in ("COM", "LPT")
                                      for digit in "0123456789\u00b9\u00b2\u00b3"])
"""Device names Windows reserves for a file's stem (``CON.nii.gz`` is the console, not a file): Microsoft's
"Naming Files, Paths, and Namespaces" lists COM0-9 and LPT0-9 with the superscript digits 1-3 (``COM\u00b9``), and
CONIN$/CONOUT$ open the console's input and output."""


def windows_name_problem(name: str) -> Optional[str]:
    """Why ``name`` (one file name, no folder) cannot be a file's name on Windows, or None: one of ``< > : " | ? *``
    or a control character (``:`` names an NTFS alternate data stream of another file), a trailing space or dot
    (Windows drops it), or a device name as its stem (:data:`WINDOWS_RESERVED_NAMES`)."""
    if re.search(r'[<>:"|?*\x00-\x1f]', name):
        return "it holds one of < > : \" | ? * or a control character"
    if name.endswith((" ", ".")):
        return "it ends in a space or a dot"
    if name.split(".")[0].strip().upper() in WINDOWS_RESERVED_NAMES:
        return f"'{name.split('.')[0]}' is a device name there (CON, PRN, AUX, NUL, COM0-9, LPT0-9)"
    return None


def _windows_file_names() -> bool:
    """Whether file names follow Windows' rules here (:func:`windows_name_problem`)."""
    return sys.platform == "win32"


def shell_word(text: str) -> str:
    """``text`` quoted as one word for the shell a user types advice into: POSIX quoting (``'mine a'``), on Windows
    ``cmd.exe``'s double quotes (``"mine a"``), where single quotes stay part of the word (a name with a space was
    split, a quoted path not found; the review)."""
    if os.name == "nt":
        import subprocess

        return subprocess.list2cmdline([str(text)])
    import shlex

    return shlex.quote(str(text))


def check_folder_writable(folder: PathLike, what: str = "Output folder") -> Path:
    """Raise InputError unless a file can be created in ``folder`` (tried for real, so read-only mounts and
    ACLs count too, also for root): an unwritable output folder is found before the work, not after it."""
    folder = Path(folder) if str(folder) else Path(".")
    if folder.exists() and not folder.is_dir():  # 'crossval -o data.csv' was told to fix its permissions
        raise InputError(f"{what} '{printable_path(folder)}' is a file, not a folder; give a folder (new or "
                         f"existing) for the outputs.")
    try:
        fd, probe = tempfile.mkstemp(prefix=".livertumorseg-write-test.", dir=str(folder))
    except FileNotFoundError as exc:  # Windows: a path over its limit; elsewhere (a folder that vanished) as below
        too_long = _folder_too_long_error(folder, _SHORTEST_NII_GZ_TEMPORARY)
        if too_long is not None:
            raise too_long from None
        raise InputError(f"{what} '{printable_path(folder)}' is not writable ({exc.strerror or exc}); choose "
                         f"another output location or fix its permissions.") from None
    except OSError as exc:
        raise InputError(f"{what} '{printable_path(folder)}' is not writable ({exc.strerror or exc}); choose "
                         f"another output location or fix its permissions.") from None
    os.close(fd)
    os.unlink(probe)
    return folder


def similar_names_hint(path: PathLike, most_entries: int = 20000) -> str:
    """`` (its folder holds 'ct.nii.gz', a name like it)`` for a missing ``path`` whose folder holds up to 3 entries
    named like it: its name with more after it (``ct.nii`` written for ``ct.nii.gz``) or a close spelling (difflib,
    ratio 0.8). '' when nothing is close, or the folder is missing, unreadable or holds more than
    ``most_entries`` entries (it is not listed further). A missing file was answered 'check the path' alone, the
    file meant lying beside it under another extension or one letter apart."""
    import difflib

    path = Path(path)
    name = path.name
    if not name:
        return ""
    names = []  # type: List[str]
    try:
        with os.scandir(str(path.parent)) as entries:
            for entry in entries:
                names.append(entry.name)
                if len(names) > most_entries:
                    return ""
    except OSError:
        return ""
    longer = sorted(n for n in names if n.startswith(name) and n != name)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.8)
    shown = list(dict.fromkeys(longer + close))[:3]
    if not shown:
        return ""
    quoted = ", ".join(f"'{n}'" for n in shown)
    return f" (its folder holds {quoted}, {'a name' if len(shown) == 1 else 'names'} like it)"


def nearest_existing_folder(path: PathLike) -> Path:
    """``path`` or its nearest parent that exists (what a run that makes ``path`` writes into first)."""
    path = Path(path)
    return next(p for p in [path] + list(path.absolute().parents) if p.exists())


def outermost_missing_folder(path: PathLike) -> Optional[Path]:
    """The outermost of ``path`` and its parents that does not exist yet: what ``mkdir(parents=True)`` creates
    first, and what a failed run removes to leave nothing behind; None when ``path`` exists."""
    path = Path(path)
    missing = None
    for candidate in [path] + list(path.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def remove_empty_folders(innermost: PathLike, outermost: PathLike) -> None:
    """Remove ``innermost`` and its parents up to ``outermost`` (what :func:`outermost_missing_folder` said a run
    made), innermost first, each only while it is empty: another process may have written into them meanwhile
    (two evaluate runs into results/m1 and results/m2: m1's Ctrl-C deleted m2's finished results)."""
    innermost, outermost = Path(innermost), Path(outermost)
    for folder in [innermost] + list(innermost.parents):
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): what is above it is not this run's alone either
            return
        if folder == outermost:
            return


def check_can_write(path: PathLike, overwrite: bool = False) -> Path:
    """Raise a clear error if ``path`` exists (and not ``overwrite``), its folder is missing or not writable,
    or its name holds bytes that are not UTF-8. ``overwrite`` must be a bool: ``overwrite="no"`` is truthy, and
    replaced the user's file. Before judging, an earlier version of ``path`` that a killed run left hidden is
    put back or made visible (:func:`restore_set_aside_outputs_of`). Returns the path to write: ``path``, or the
    file a symbolic link ``path`` names (:func:`through_link`). Outputs written together:
    :func:`check_can_write_all`."""
    return check_can_write_all([path], overwrite)[0]


def check_json_output(path: Optional[PathLike], overwrite: bool, inputs: Iterable[Any] = (), option: str = "--json",
                      inputs_named: str = "the run's inputs") -> Optional[Path]:
    """Before a script's work: its JSON output ``path`` (None or "": none asked for) ends in .json, is none of
    ``inputs`` (files the run reads; None entries and folders are skipped) and can be written (an existing file only
    with ``overwrite``); InputError / OutputExistsError otherwise. ``option`` and ``inputs_named`` go into the
    messages. The benchmark scripts wrote their JSON after the whole run, over any file, inputs included."""
    if not path:
        return None
    if Path(path).suffix.lower() != ".json":
        raise InputError(f"{option} '{path}' must end in .json.")
    for item in inputs:
        if item is not None and Path(item).is_file() and same_file_among([Path(path), Path(item)]):
            raise InputError(f"{option} '{path}' is one of {inputs_named} ('{item}'); choose another file name.")
    return check_can_write(path, overwrite)


def check_can_write_all(paths: Sequence[PathLike], overwrite: bool = False) -> List[Path]:
    """:func:`check_can_write` for the outputs ``paths`` one run writes together (a label map and its report):
    the earlier versions a killed run left hidden are put back as one group first (one run's, not a mix of two:
    :func:`restore_set_aside_outputs_of`), then each path is judged. Returns the paths checked, in order."""
    if not isinstance(overwrite, (bool, np.bool_)):
        raise InputError(f"overwrite must be True or False (got {overwrite!r}).")
    checked = [through_link(check_path_encoding(path, "Output")) for path in paths]
    restore_set_aside_outputs_of(checked)  # a killed run's hidden earlier versions are back before they are judged
    return [_check_writable(path, overwrite) for path in checked]


def through_link(path: PathLike) -> Path:
    """Where an output named ``path`` is written: the file a symbolic link ``path`` points to (links resolved, as a
    shell's ``>`` or ``cp`` writes through a link), so the link is kept and names the new file; ``path`` itself when
    it is no link, or a link to nothing (a dangling link is refused without overwrite and replaced with it) or to a
    folder (refused as a folder). A link to a file of another extension is refused (the writers pick the format
    by the name). (Outputs used to be renamed over the link itself: the link became a plain file, and the file it
    named kept the old result.)"""
    path = Path(path)
    if not (path.is_symlink() and path.is_file()):
        return path
    target = Path(os.path.realpath(path))
    if full_suffix(target).lower() != full_suffix(path).lower():  # the format is chosen by the name's extension
        raise InputError(f"Output '{path}' is a symbolic link to '{target}', a file of another extension: the output "
                         f"would be written in one format under the other's name. Give the file's own name, or "
                         f"another output path.")
    return target


def _check_writable(path: Path, overwrite: bool) -> Path:
    """The checks of :func:`check_can_write` after the name's encoding and the set-aside files."""
    if path.is_symlink() and not path.exists() and not overwrite:  # a dangling link is the user's too
        raise OutputExistsError(f"Output '{path}' is a symbolic link (to the missing '{os.readlink(path)}'); pass "
                                f"{option_hint('--overwrite', 'overwrite=True')} to replace the link or choose "
                                f"another output path.")
    if path.is_dir():  # before 'exists': --overwrite, which that advice named, cannot replace a folder
        raise InputError(f"Output '{path}' is a folder; give a file name.")
    problem = windows_name_problem(path.name) if _windows_file_names() else None
    if problem is not None:  # its temporary failed as an 'internal error' after the work; ':' wrote a hidden stream
        raise InputError(f"Output '{path}' cannot be a file name on Windows ({problem}); choose another name.")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"Output '{path}' already exists; pass {option_hint('--overwrite', 'overwrite=True')} "
                                f"to replace it or choose another output path.")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise InputError(f"Output folder '{parent}' does not exist; create it first{unexpanded_home_hint(parent)}.")
    if not parent.is_dir():
        raise InputError(f"Output folder '{parent}' is not a folder; choose another output path.")
    check_folder_writable(parent)
    return path


def unexpanded_home_hint(path: PathLike) -> str:
    """A hint for a path that begins with '~' the shell did not expand (it was quoted): the message invited the
    user to create a folder literally named '~'. '' for any other path."""
    from .resources import expand_home

    if not str(path).startswith("~") or Path(str(path)).exists():
        return ""
    try:
        expanded = expand_home(str(path))
    except InputError as exc:  # no home folder (the shell left '~' as it was too), or '~name' of no account here
        return f" ({str(exc)[:-1]})"
    return (f" (a quoted '~' is not your home folder: write the path without quotes, or in full, such as "
            f"'{expanded}')")


def unexpanded_home_prefix(text: str, folder_here_counts: bool = True) -> bool:
    """Whether ``text`` begins with a '~' a shell would have taken as a home folder: '~' alone, '~/...' ('~\\...' on
    Windows), or '~name' of an account whose home folder is here; and (with ``folder_here_counts``, for a typed
    path) no file or folder of that first part is in the working folder. '~archive' with no account 'archive' is a
    real folder name (bash leaves it as it is too; on Windows Python guesses a home folder for any name, so the
    folder must be there)."""
    from .resources import expand_home

    if not text.startswith("~"):
        return False
    first = re.split(r"[\\/]" if os.name == "nt" else "/", text, maxsplit=1)[0]
    if folder_here_counts and os.path.lexists(first):  # a folder named '~' or '~archive' here: the path means it
        return False
    if first == "~":
        return True
    try:
        return expand_home(first).is_dir()
    except InputError:  # '~name' of no account: a name, not a home folder
        return False


def refuse_unexpanded_home(path: PathLike, what: str) -> None:
    """InputError for a folder this run would create whose path begins with a '~' the shell left as it was
    (:func:`unexpanded_home_prefix`: quoted, after '=' as in ``--output=~/x``, or cmd.exe's, which never expands
    it): ``mkdir`` made a folder named '~' in the working folder, and the run said it wrote '~/x/...', read as the
    home folder (the portability audit). A file output is refused already where its folder is missing
    (:func:`unexpanded_home_hint`); this is for the outputs that are folders."""
    from .resources import expand_home

    text = str(path)
    if not unexpanded_home_prefix(text):
        return
    try:
        in_full = f", such as '{expand_home(text)}'"
    except InputError:  # no home folder here: in full is the only way
        in_full = ""
    if os.name == "nt":  # cmd.exe and PowerShell's native arguments leave '~' as it is: the full path is the way
        raise InputError(f"{what} '{text}' begins with '~', which is not your home folder here: write the path in "
                         f"full{in_full}.")
    raise InputError(f"{what} '{text}' begins with '~', which was not taken as your home folder (a quoted '~', or "
                     f"one after '=' as in --output=~/x, is left as it is): write it after a space and without "
                     f"quotes (--output ~/x), or in full{in_full}.")


def apply_default_permissions(path: PathLike) -> None:
    """Give a written file the usual ``0666 & ~umask`` (what a plain ``open`` gives; 0644 with umask 022).

    ``mkstemp`` creates 0600 files, and some writers (safetensors) replace the file they are given, so
    this is applied to the finished file just before it is renamed into place.
    """
    umask = os.umask(0)
    os.umask(umask)
    chmod_where_allowed(path, 0o666 & ~umask)


_apply_default_permissions = apply_default_permissions  # older name

CHMOD_REFUSED_ERRNOS = (errno.EPERM, errno.ENOTSUP, getattr(errno, "EOPNOTSUPP", errno.ENOTSUP), errno.ENOSYS)
"""What ``chmod`` answers on a file system whose permissions the mount sets, not each file's: a USB stick (FAT,
exFAT) or Windows share (CIFS) mounted for another owner, some FUSE file systems."""


def chmod_where_allowed(path: PathLike, mode: int) -> None:
    """``os.chmod(path, mode)``, skipped where the file system refuses to change a file's permissions
    (:data:`CHMOD_REFUSED_ERRNOS`): the file is written all the same, with the permissions the mount gives it. Every
    output into such a folder failed after the whole run with "Cannot write or read '.../.seg.PID-...tmp.nii.gz'
    (Operation not permitted)", leaving that empty hidden file behind."""
    try:
        os.chmod(path, mode)
    except OSError as exc:
        if exc.errno not in CHMOD_REFUSED_ERRNOS:
            raise
        log.debug("permissions of '%s' not set (%s): the file system keeps its own", path, exc.strerror)


def apply_output_permissions(path: PathLike, target: PathLike) -> None:
    """Give the finished temporary file ``path`` the permissions of the file it will replace at ``target``, else
    :func:`apply_default_permissions`: a label map or report the user had made private (0600: patient data) became
    0644 when written over."""
    try:
        mode = stat.S_IMODE(os.stat(str(target)).st_mode)
    except OSError:
        apply_default_permissions(path)
        return
    chmod_where_allowed(path, mode)


def is_hidden_name(name: str) -> bool:
    """A file or folder name that data discovery skips: hidden (``.x``, macOS ``._x`` resource files, our own
    temporaries) or the ``__MACOSX`` copy of a tree that macOS zip archives carry."""
    return name.startswith(".") or name == "__MACOSX"


def read_text_file(path: PathLike, what: str, save_as: str = "UTF-8") -> str:
    """The text of a small file the user gives (JSON, YAML, a CSV list) that ``what`` names in errors (e.g.
    "Training config"): UTF-8, with or without a byte-order mark, or UTF-16 with one (what Windows PowerShell
    5.1's ``>``, ``Out-File`` and ``Export-Csv -Encoding Unicode`` and Excel's "Unicode Text" write; such a config
    ended in "internal error: UnicodeDecodeError", a UTF-8 one with a mark in a YAML error). InputError for any
    other encoding, telling the user to save the file as ``save_as``."""
    data = Path(path).read_bytes()
    encoding = "utf-16" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} '{path}' is not UTF-8 text (byte {exc.start}); save it as {save_as}.") from None


CSV_DELIMITERS = (",", "\t", ";")
"""Column separators of a user's CSV list, in order of preference: comma; tab (Excel's "Unicode Text", UTF-16);
semicolon (Excel's "CSV" where the decimal mark is a comma). The header line decides (see :func:`csv_delimiter`)."""

CSV_SAVE_AS = 'UTF-8 CSV (in Excel: "CSV UTF-8 (Comma delimited)")'
"""What an undecodable CSV list should be saved as (the format's name in Excel's "Save as" list)."""


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""The first characters that make a spreadsheet (Excel, LibreOffice) take a CSV cell as a formula (OWASP's CSV
injection list): a case named '=HYPERLINK(...)', '+1' or '-2' opened as one."""


def spreadsheet_safe_text(text: str) -> str:
    """A CSV text cell (a case name, a message, a path; never a number's cell, whose '-0.5' stays a number) that a
    spreadsheet shows as written: ``'`` before a cell starting with one of :data:`FORMULA_STARTS`, also after any
    ``'`` it starts with (``'=x`` -> ``''=x``), so :func:`spreadsheet_cell_text` gives every text back unchanged."""
    return "'" + text if text.lstrip("'")[:1] in FORMULA_STARTS else text


def spreadsheet_cell_text(cell: str) -> str:
    """The text :func:`spreadsheet_safe_text` wrote as ``cell`` (its ``'`` dropped); any other cell unchanged."""
    return cell[1:] if cell.startswith("'") and cell.lstrip("'")[:1] in FORMULA_STARTS else cell


CSV_KEY_COLUMN = "image"
"""The column every CSV list we read has (batch case lists and training data lists): it tells the separator."""

_EXCEL_SEPARATOR_LINE = re.compile(r"sep=(.)\r?$", re.IGNORECASE)
"""Excel's first line naming the separator (``sep=;``), which Excel writes and reads for CSV in other locales."""

_POWERSHELL_TYPE_LINE = re.compile(r"#TYPE .*$")
"""The first line Windows PowerShell 5.1's ``Export-Csv`` writes unless told ``-NoTypeInformation`` (``#TYPE
System.Management.Automation.PSCustomObject``), which its ``Import-Csv`` skips."""


def csv_delimiter(header_line: str) -> str:
    """The column separator of a CSV list whose first line is ``header_line``: the first of
    :data:`CSV_DELIMITERS` that splits it into cells one of which is :data:`CSV_KEY_COLUMN` (so a semicolon list
    whose header has a comma in a quoted column name is still split on semicolons); else the first it holds
    (comma when it holds none: a one-column list). Only the header is looked at: its column names are fixed words
    (``image``, ``label``, ...), whereas paths in the rows may hold any of them."""
    for delimiter in CSV_DELIMITERS:
        cells = next(csv.reader([header_line], delimiter=delimiter), [])
        if any(cell.strip().lower() == CSV_KEY_COLUMN for cell in cells):
            return delimiter
    return next((delimiter for delimiter in CSV_DELIMITERS if delimiter in header_line), ",")


def read_csv_rows(path: PathLike, what: str) -> Tuple[List[str], List[Tuple[int, Dict[str, str]]]]:
    """``(columns, rows)`` of a CSV list the user gives (a batch case list, a training data list), read by
    :func:`read_text_file` (UTF-8 with or without a byte-order mark, or UTF-16 with one) and separated by comma,
    tab or semicolon (:func:`csv_delimiter`; or as a first line ``sep=;`` that Excel writes says). Column names are
    stripped and lower-cased (``'Image '`` -> ``'image'``); each row is ``(line, {column: stripped text})`` with
    ``line`` the file's line it ends on (blank lines, a ``sep=`` line and the ``#TYPE`` line of PowerShell 5.1's
    ``Export-Csv`` are skipped, so it is not the row's index); a row whose cells are all empty (``,,``: Excel saves
    an emptied row inside the table so) is skipped as a blank line, a missing cell is ``""`` and empty cells beyond
    the header are dropped; a filled one beyond it, or a column named twice, is refused (InputError). ``what`` names the file in errors (e.g. "Case list"); InputError for an undecodable file."""
    text = _csv_text(path, what)
    first_line, rest = _first_line_and_rest(text)
    typed = _POWERSHELL_TYPE_LINE.match(first_line)  # was taken for the header: "needs an 'image' column"
    if typed:
        text = rest
        first_line, rest = _first_line_and_rest(text)
    named = _EXCEL_SEPARATOR_LINE.match(first_line)
    if named:
        text = rest
        first_line = _first_line_and_rest(text)[0]
    # skipinitialspace: a path quoted after the separator's space ('ct.nii.gz, "my scans/lab 1.nii.gz"', as lists
    # are written by hand) kept its quotes and failed as 'label .../"my scans/lab 1.nii.gz" does not exist'
    reader = csv.DictReader(io.StringIO(text, newline=""), skipinitialspace=True,
                            delimiter=named.group(1) if named else csv_delimiter(first_line))
    lines_before = (1 if named else 0) + (1 if typed else 0)
    rows = []
    try:
        columns = [name.strip().lower() for name in (reader.fieldnames or [])]
        _refuse_repeated_columns(path, what, columns)
        reader.fieldnames = columns
        for row in reader:
            _refuse_cells_beyond_the_header(path, what, lines_before + reader.line_num, row.get(None), len(columns))
            rows.append((lines_before + reader.line_num,
                         {name: (value or "").strip() for name, value in row.items() if name is not None}))
    except csv.Error as exc:  # a cell over the csv module's 128 KiB limit was an "internal error: Error: field larger"
        start = lines_before + reader.line_num + 1  # DictReader's line_num stays at the last row it completed
        raise InputError(f"{what} '{path}' cannot be read as CSV from line {start} on ({exc}): a "
                         f"double quote that opens a cell without one closing it takes in all the lines after it; "
                         f"check the quotes, or save it as {CSV_SAVE_AS}.") from None
    # ',,' rows were refused as "line N has an empty 'image'" (or 'empty image or label path')
    return columns, [(line, cells) for line, cells in rows if any(cells.values())]


def _csv_text(path: PathLike, what: str) -> str:
    """The text of the CSV list ``path`` (:func:`read_text_file`); InputError for one holding NUL characters, which
    a UTF-16 file without its byte-order mark reads as (it ended in "internal error: Error: line contains NUL")."""
    text = read_text_file(path, what, save_as=CSV_SAVE_AS)
    if "\0" in text:
        raise InputError(f"{what} '{path}' holds NUL characters (UTF-16 text without a byte-order mark, or no text "
                         f"file); save it as {CSV_SAVE_AS}.")
    return text


def _first_line_and_rest(text: str) -> Tuple[str, str]:
    """``text``'s first line and what follows it, a line ending in ``\\r\\n``, ``\\n`` or ``\\r`` alone (Excel for
    Mac's "CSV (Macintosh)" ends its lines so: such a list ended in "internal error: Error: new-line character seen
    in unquoted field", its whole text taken for the header line)."""
    parts = re.split(r"\r\n|\r|\n", text, maxsplit=1)
    return parts[0], (parts[1] if len(parts) > 1 else "")


def _refuse_repeated_columns(path: PathLike, what: str, columns: List[str]) -> None:
    """InputError when the header names a column twice ('image' and 'Image '): the last one's cells were read and
    the first's dropped without a word."""
    counts = collections.Counter(name for name in columns if name)  # a count per name was quadratic: a first line of
    repeated = sorted(name for name, count in counts.items() if count > 1)  # 100,000 cells took minutes, no word
    if repeated:
        raise InputError(f"{what} '{path}' names the column(s) {', '.join(repeated)} more than once in its header "
                         f"(letter case and spaces aside); keep one column of each name.")


def _refuse_cells_beyond_the_header(path: PathLike, what: str, line: int, extra: Optional[List[str]],
                                    width: int) -> None:
    """InputError for a row with more non-empty cells than the header has columns: a path with a comma written
    without double quotes ('b,c.nii.gz' read as 'b' and failed as "Input 'b' does not exist")."""
    if extra and any((cell or "").strip() for cell in extra):
        raise InputError(f"{what} '{path}' line {line} has more cells than its header's {width} column(s) "
                         f"(extra: {', '.join(repr(c) for c in extra[:3])}): a path or name holding the separator "
                         f"must be written in double quotes (\"b,c.nii.gz\").")


def csv_cell_path(folder: PathLike, text: str) -> Path:
    """The file or folder a CSV cell ``text`` names: as written when absolute (also ``~/...``: the home folder),
    else relative to ``folder`` (the CSV's own). A path written with Windows backslashes (``img\\ct1.nii.gz``, a
    list made on Windows) is taken with ``/`` for its ``\\`` where the system reads ``\\`` as a letter of a name
    (Linux, macOS) and only that spelling exists; otherwise the path as written (its caller reports a missing
    file)."""
    path = _csv_cell_in(folder, text)
    if "\\" in text and os.sep == "/" and not os.path.lexists(path):
        slashed = _csv_cell_in(folder, text.replace("\\", "/"))
        if os.path.lexists(slashed):
            return slashed
    return path


def _csv_cell_in(folder: PathLike, text: str) -> Path:
    """``text`` with a leading ``~`` taken as the home folder, as a training CSV takes it (``~/scans/ct.nii.gz`` in a
    case list was looked for as ``LIST_FOLDER/~/scans/ct.nii.gz``, and the case failed with the advice to write the
    path "without quotes")."""
    from .resources import expand_home

    path = expand_home(text)
    return path if path.is_absolute() else Path(folder) / path


def file_identities(path: PathLike) -> list:
    """What makes ``path`` the same file as another: its real path (symlinks and ``..`` resolved; compared
    without case on Windows and macOS, whose usual file systems ignore it) and, when it exists on a file system
    that numbers its files, its (device, inode) pair (hard links, and any other spelling of an existing file)."""
    real = os.path.realpath(os.fspath(path))
    if sys.platform in ("win32", "darwin"):
        real = os.path.normcase(real).casefold()
    try:
        stat = os.stat(os.fspath(path))
    except OSError:
        return [real]
    if not stat.st_ino:  # file systems without file ids (WebDAV, sshfs-win, some cloud drives) report 0 for all
        return [real]
    return [real, (stat.st_dev, stat.st_ino)]


def same_file_among(paths) -> bool:
    """True when two of ``paths`` (None entries skipped) are the same file by :func:`file_identities`."""
    seen = set()
    for path in paths:
        if path is None:
            continue
        identities = set(file_identities(path))
        if identities & seen:
            return True
        seen |= identities
    return False


STALE_TEMPORARY_SECONDS = 600
"""A temporary output file (or folder) of a process that no longer runs, untouched this long, is left over from a
kill (the system's out-of-memory killer, SIGKILL, a power cut), a crash, or a run that could not delete it (on
Windows, a file a virus scanner or indexer held open: :func:`_temporary_beside` leaves it) and is removed when the
same output is written again, and (this computer's only) when anything is next written into its folder
(:func:`remove_this_computers_leftovers`)."""

_TEMPORARY_MARK = re.compile(r"\." + PROCESS_MARK + r"-[a-z0-9_]{8}\.tmp")
"""The mark in the name of a temporary this tool made: ``.{process mark}-{random}.tmp``, ``random`` being the 8
characters (a-z, 0-9, _) ``tempfile.mkstemp``/``mkdtemp`` put there. Any random part was taken, so a user's hidden
file such as ``.scan.2023-backup.tmp.nii.gz`` beside the output ``scan.nii.gz`` was removed as a killed run's
leftover (process 2023, ended) once 10 minutes old."""


def _last_changed(status: os.stat_result) -> float:
    """When the file or folder ``status`` (``os.stat``/``os.lstat``) describes was last written or renamed, in
    seconds since 1970: the later of ``st_mtime`` and ``st_ctime`` (a rename keeps ``st_mtime`` but sets
    ``st_ctime``, on POSIX; on Windows ``st_ctime`` is the creation time, which a rename keeps too)."""
    return max(status.st_mtime, status.st_ctime)


def temporary_prefix(stem: str) -> str:
    """The start of the name of a temporary file or folder that this process makes, for ``mkstemp`` or
    ``mkdtemp`` (which add ``{random}{suffix}``): ``{stem}{mark}-``, ``mark`` being this process's
    :func:`~.processes.process_mark` (id, start time and this computer's host tag), which
    :func:`remove_stale_temporaries` reads."""
    return f"{stem}{process_mark()}-"


def remove_stale_temporaries(folder: PathLike, prefix: str, suffix: str,
                             min_age_seconds: float = STALE_TEMPORARY_SECONDS,
                             this_computer_only: bool = False) -> List[Path]:
    """Remove temporary files and folders ``{prefix}{mark}-{random}{suffix}`` in ``folder`` (as
    :func:`temporary_prefix` names them, ``mark`` being ``{pid}-{start time}@{host}`` or, in names of older
    versions and where no start time can be read, without ``@{host}`` or ``-{start time}``; also one nested inside
    another, ``.{prefix}...``) whose writing processes have all ended (:func:`~.processes.marked_process_alive`:
    a process id now held by a process that started at another time, after the temporary was last changed, counts
    as ended) and which were last written more than ``min_age_seconds`` ago (default
    :data:`STALE_TEMPORARY_SECONDS`). One whose name carries another computer's (or container's) host
    (:func:`~.processes.marked_elsewhere`: a folder on a network drive, or mounted into a container) is never
    removed, whatever its age: its process id means nothing here (a run there was removed while it wrote, once its
    files were 10 minutes old and its id unused here). What it removes, what it keeps of an ended process only
    because it is younger, and another computer's older than ``min_age_seconds``, is said in one line each
    (:func:`_say_leftovers`; a user who found hidden ``.tmp`` files beside the outputs after a kill was told
    nothing). With ``this_computer_only``, only names whose every mark carries this computer's host tag are
    looked at (:func:`remove_this_computers_leftovers`). Returns the paths removed. Never raises."""
    import shutil

    folder = Path(folder)
    try:
        names = sorted(entry.name for entry in os.scandir(folder))
    except OSError:
        return []
    now = time.time()
    removed, too_recent, elsewhere = [], [], []  # type: List[Path], List[Path], List[Path]
    for name in names:
        if not (name.startswith(prefix) or name.startswith("." + prefix)) or not name.endswith(suffix):
            continue
        marks = list(_TEMPORARY_MARK.finditer(name))
        if not marks:
            continue  # an older naming (no process id)
        if this_computer_only and any(mark["host"] is None or marked_elsewhere(mark) for mark in marks):
            continue
        candidate = folder / name
        try:
            status = candidate.lstat()
            if any(marked_elsewhere(mark) for mark in marks):
                if now - status.st_mtime > min_age_seconds:
                    elsewhere.append(candidate)
                continue
            if any(marked_process_alive(mark, _last_changed(status)) for mark in marks):
                continue  # a writer still running
            if now - status.st_mtime <= min_age_seconds:
                too_recent.append(candidate)
                continue
            if candidate.is_dir() and not candidate.is_symlink():
                shutil.rmtree(candidate, ignore_errors=True)
            else:
                candidate.unlink()
            if not os.path.lexists(candidate):
                removed.append(candidate)
        except OSError:
            pass
    _say_leftovers(folder, removed, too_recent, elsewhere, min_age_seconds)
    return removed


_folders_looked_through = set()  # type: set
"""The folders (real paths) :func:`remove_this_computers_leftovers` has looked through in this process."""


def remove_this_computers_leftovers(folder: PathLike) -> List[Path]:
    """Once per process and folder: :func:`remove_stale_temporaries` of every temporary in ``folder`` named by this
    computer (``.{anything}.{pid}-{start time}@{host}-{random}.tmp{anything}``, ``host`` this
    :func:`~.processes.host_tag`), whatever output it was for. A killed run's temporaries were removed only when
    the same output was written again, so those of an output written under another name next time (a new case
    name, a changed ``-o``) stayed for good. Only names that carry this computer's tag are looked at: a user's file,
    another computer's and an older version's (no tag: their output's own write still removes them) are not.
    Returns the paths removed."""
    key = os.path.realpath(os.fspath(folder) or ".")
    if key in _folders_looked_through:
        return []
    _folders_looked_through.add(key)
    return remove_stale_temporaries(folder, ".", "", this_computer_only=True)


_LEFTOVER_NAMES_SHOWN = 4
"""How many leftover names one line about them lists (then "and N more"): a batch folder can hold hundreds."""

_leftovers_held = threading.local()
"""``found``: the leftovers (:func:`remove_stale_temporaries`) of a group of outputs being written, said together
at its end (:func:`leftovers_said_together`); absent outside such a group."""


@contextlib.contextmanager
def leftovers_said_together() -> Iterator[None]:
    """What :func:`remove_stale_temporaries` finds inside the block (in this thread) is said at its end, one line per
    folder and kind, not one line per output: a killed ``segment`` leaves a label map's, a report's, a preview's
    and a probability map's temporaries, found by four calls. Nested blocks are part of the outermost."""
    if getattr(_leftovers_held, "found", None) is not None:
        yield
        return
    _leftovers_held.found = []
    try:
        yield
    finally:
        found, _leftovers_held.found = _leftovers_held.found, None
        merged = {}  # type: Dict[Tuple[Path, float], Tuple[Dict[Path, None], Dict[Path, None], Dict[Path, None]]]
        for folder, removed, too_recent, elsewhere, min_age_seconds in found:
            entry = merged.setdefault((folder, min_age_seconds), ({}, {}, {}))
            for kind, paths in zip(entry, (removed, too_recent, elsewhere)):
                kind.update(dict.fromkeys(paths))  # in order, each once (two looks may find one file)
        for (folder, min_age_seconds), kinds in merged.items():
            _say_leftovers(folder, *(list(kind) for kind in kinds), min_age_seconds)


def _listed_names(paths: Sequence[Path]) -> str:
    """The names of ``paths`` in quotes, at most :data:`_LEFTOVER_NAMES_SHOWN` of them, then how many more."""
    shown = ", ".join(f"'{printable_path(path.name)}'" for path in paths[:_LEFTOVER_NAMES_SHOWN])
    rest = len(paths) - _LEFTOVER_NAMES_SHOWN
    return shown + (f" and {rest} more" if rest > 0 else "")


def _say_leftovers(folder: Path, removed: List[Path], too_recent: List[Path], elsewhere: List[Path],
                   min_age_seconds: float) -> None:
    """Log one line for the temporaries :func:`remove_stale_temporaries` removed from ``folder`` (info), one for
    those of ended processes it kept as younger than ``min_age_seconds`` (a warning: they can be deleted) and one
    for those of another computer or container older than that (a warning: they can be deleted if no run there
    writes into the folder); held until the end of a :func:`leftovers_said_together` block where one is open."""
    if not removed and not too_recent and not elsewhere:
        return
    held = getattr(_leftovers_held, "found", None)
    if held is not None:
        held.append((folder, removed, too_recent, elsewhere, min_age_seconds))
        return
    where = printable_path(folder)
    if removed:
        log.info("removed %d unfinished temporary file(s) that runs which ended without removing them (killed, "
                 "crashed, or a file held open) left in '%s': %s", len(removed), where, _listed_names(removed))
    if too_recent:
        log.warning("warning: '%s' holds %d unfinished temporary file(s) of a run that ended without removing them "
                    "(killed, crashed, or a file held open): %s; they can be deleted (a later run writing there "
                    "removes them once they are %g minutes old).", where, len(too_recent), _listed_names(too_recent),
                    min_age_seconds / 60)
    if elsewhere:
        unchanged = f", unchanged for over {min_age_seconds / 60:g} minutes" if min_age_seconds > 0 else ""
        log.warning("warning: '%s' holds %d unfinished temporary file(s) of a run on another computer or container "
                    "(a network or shared folder)%s: %s; whether that run still goes on cannot be told from here, "
                    "so they are left alone: delete them if no run there is writing into this folder.", where,
                    len(elsewhere), unchanged, _listed_names(elsewhere))


REPLACE_RETRY_SECONDS = (0.1, 0.25, 0.5, 1.0)
"""Waits between tries of :func:`replace_file` on Windows, where a file another program holds open (a virus
scanner for a moment, Excel or a viewer for longer) cannot be replaced."""


def replace_file(source: PathLike, target: PathLike) -> None:
    """``os.replace(source, target)``; on Windows retried a few times when the target is held open (a scanner
    that looks at every new file lets go within a second; a program the user has it open in does not, and
    the error then names the target: see ``cli.file_system_error_text``). Windows replaces no file whose Read-only
    attribute is set (an output copied from a CD or DVD), where Linux and macOS replace it: there the attribute is
    cleared for the replacement, and set again when the replacement still fails."""
    waits = REPLACE_RETRY_SECONDS if sys.platform == "win32" else ()
    mode_before = None  # the target's mode while its Read-only attribute is cleared
    for wait in waits:
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if mode_before is None:
                mode_before = _clear_read_only(target)
                if mode_before is not None:
                    continue
            time.sleep(wait)
    try:
        os.replace(source, target)
    except OSError:
        if mode_before is not None:
            with contextlib.suppress(OSError):
                os.chmod(target, mode_before)
        raise


def _clear_read_only(path: PathLike) -> Optional[int]:
    """Give the existing file ``path`` write permission when its mode has none (on Windows: clear its Read-only
    attribute); returns its mode before (``os.chmod`` sets it back), None when nothing was changed."""
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode) or mode & stat.S_IWRITE:
            return None
        os.chmod(path, stat.S_IMODE(mode) | stat.S_IWRITE)
    except OSError:
        return None
    return stat.S_IMODE(mode)


WINDOWS_MAX_PATH = 260
"""Characters in a whole Windows path (with its terminating NUL) unless long paths are enabled system-wide."""

_TEMPORARY_EXTRA = len(".") + 10 + len("-") + 12 + len("@") + HOST_TAG_CHARACTERS + len("-") + 8 + len(".tmp")
"""Characters of ``.{pid}-{start time}@{host}-{random}.tmp`` on Windows at most (the only system with a path limit
here), 42: the process id below 2**32 (10 digits), the start time in 100 ns units since 1601 in base 36 (12
characters until the year 16600: :func:`~.processes.process_mark_of`), the 4-character
:func:`~.processes.host_tag`, ``mkstemp``'s 8 random characters."""


def _max_path() -> Union[int, None]:
    """The platform's path length limit that temporary names must respect (None: no practical limit)."""
    return WINDOWS_MAX_PATH if sys.platform == "win32" else None


def path_limit_hint(path: PathLike) -> str:
    """For a path that was not found: where it passes Windows' path limit (:func:`_max_path`), a hint saying so, as
    Windows reports such a path as missing (ERROR_PATH_NOT_FOUND) whether or not it exists; '' anywhere else."""
    limit = _max_path()
    length = len(os.path.abspath(os.fspath(path)))
    if limit is None or length < limit:
        return ""
    return (f" (its full path has {length} characters, beyond Windows' limit of {limit - 1}: Windows cannot open it "
            f"even where it exists; move it to a folder with a shorter path, or turn on long paths in Windows "
            f"(LongPathsEnabled))")


def temporary_stem(folder: Path, stem: str, suffix: str) -> str:
    """``stem`` shortened (never below 1 character) so that ``folder/.{stem}.{mark}-{random}.tmp{suffix}`` stays
    within the file system's limit on a name (:func:`_longest_name`) and Windows' 260-character path limit: an
    output path that fits would otherwise fail only because of the longer temporary name. The same output always
    gets the same stem, so stale temporaries are still found. This helps an output whose own name is long. On
    Windows the rest of the temporary name cannot be shortened: ``/``, ``.``, one character of the stem and
    :data:`_TEMPORARY_EXTRA` are 45 characters beside the output's extension, so an output in a folder whose full
    path is longer than 214 characters less that extension (207 for ``.nii.gz``) can still fail, however short its
    name: a shorter folder is the way there, which the error says (:func:`_folder_too_long_error`)."""
    room = _longest_name(folder) - 1 - _TEMPORARY_EXTRA - len(suffix.encode("utf-8"))  # bytes, as the limit
    limit = _max_path()
    if limit is not None:
        room = min(room, limit - 1 - len(os.path.abspath(str(folder))) - 1 - 1 - _TEMPORARY_EXTRA - len(suffix))
    while len(stem) > 1 and len(stem.encode("utf-8")) > room:
        stem = stem[:-1]
    return stem


def _longest_name(folder: Path) -> int:
    """The longest file name ``folder``'s file system takes, in bytes (255 on most; 255 where it cannot be asked).
    An output named with 240 characters (within the limit) failed, after the whole run, with 'File name too long'
    naming its hidden temporary file, whose name is 45 characters longer (:func:`temporary_stem`)."""
    try:
        return int(os.pathconf(str(folder), "PC_NAME_MAX"))
    except (AttributeError, OSError, ValueError, TypeError):  # Windows has no pathconf; 255 there too (NTFS)
        return 255


def ascii_stem(stem: str) -> str:
    """``stem`` with each character outside printable ASCII replaced by ``_``, for a temporary file's name: on
    Windows, ITK (the .nrrd/.mha writer) opens paths in the ANSI code page, so a temporary named after an output
    ``Müller_seg.nrrd`` was written under a garbled name while the empty placeholder was renamed onto the output.
    The output keeps its own name (Python renames the finished temporary onto it)."""
    return re.sub(r"[^\x20-\x7e]", "_", stem)


@contextlib.contextmanager
def atomic_outputs(paths: Dict[str, PathLike], overwrite: bool = False) -> Iterator[Dict[str, Path]]:
    """Several outputs written as one: yields ``{key: temporary path}`` (each beside its output, as
    :func:`atomic_output`); on success all are put in place, on any failure (an exception, Ctrl-C, a rename
    that fails halfway) none is: outputs already moved are taken back and the files they replaced restored,
    so a run never leaves this run's report beside another run's label map."""
    checked = dict(zip(paths, check_can_write_all(list(paths.values()), overwrite)))
    with contextlib.ExitStack() as stack:
        with leftovers_said_together():  # a killed run's temporaries of all these outputs in one line
            temporaries = {key: stack.enter_context(_temporary_beside(checked[key])) for key in paths}
        with _named_for_the_user(temporaries, paths):
            yield temporaries
        targets = checked  # links resolved (through_link)
        for key, tmp in temporaries.items():
            if tmp.is_file():  # the writer may have replaced the file (safetensors does)
                apply_output_permissions(tmp, targets[key])
        # two runs writing the same outputs at once (two 'segment --overwrite' of one CT) placed them in turn
        # and could leave one run's label map beside the other's report: each run places its group whole
        with folders_locked(target.parent for target in targets.values()):
            if not overwrite:
                for target in targets.values():
                    if target.exists():
                        raise OutputExistsError(f"Output '{target}' appeared while writing; not overwriting it.")
            move_all_or_none([(temporaries[key], targets[key]) for key in targets], overwrite=overwrite)


@contextlib.contextmanager
def folders_locked(folders: Iterable[PathLike]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on each of ``folders`` (POSIX; in sorted order, so two holders never wait on
    each other) for the ``with`` block: :func:`atomic_outputs` places its group of outputs under it, so groups
    placed into one folder at once by two processes are placed one after the other. No lock file is made (the
    folder itself is locked); where a folder cannot be opened or locked (Windows, some network file systems)
    the block runs unlocked, as before. A folder still locked after :data:`FOLDER_LOCK_WAIT_SECONDS` (placing takes
    milliseconds) is used unlocked, with a warning: ``flock OUT livertumorseg segment ... -o OUT/s.nii.gz`` (a job
    script's lock, which the run inherits) waited on its own lock for ever, after all the work."""
    if os.name != "posix":
        yield
        return
    handles = []
    try:
        for folder in sorted({os.path.abspath(str(f)) for f in folders}):
            try:
                handle = os.open(folder, os.O_RDONLY)
            except OSError:
                continue
            handles.append(handle)
            _lock_waiting_a_while(handle, folder)
        yield
    finally:
        for handle in handles:  # closing releases the lock
            os.close(handle)


FOLDER_LOCK_WAIT_SECONDS = 30.0
"""How long :func:`folders_locked` waits for another holder of a folder's lock before it goes on without it."""


_FOLDERS_LOCKED_BY_OTHERS = set()  # type: set
"""The folders whose lock :func:`_lock_waiting_a_while` waited for in vain in this process: not waited for again (an
--overwrite batch under a job script's inherited lock waited 30 s per case)."""


def _lock_waiting_a_while(handle: int, folder: str) -> None:
    """An exclusive ``flock`` on the open folder ``handle``, waited for at most :data:`FOLDER_LOCK_WAIT_SECONDS`
    (said once while waiting; not at all for a folder already waited for in vain in this process); past it, or where
    the file system refuses locks, none is held."""
    import fcntl

    waited_in_vain = folder in _FOLDERS_LOCKED_BY_OTHERS
    deadline, said = time.monotonic() + (0.0 if waited_in_vain else FOLDER_LOCK_WAIT_SECONDS), waited_in_vain
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _FOLDERS_LOCKED_BY_OTHERS.discard(folder)  # its holder let go: waited for again next time
            return
        except BlockingIOError:
            pass
        except OSError:  # a file system without locks: unlocked, as before
            return
        if time.monotonic() >= deadline:
            if not waited_in_vain:
                _FOLDERS_LOCKED_BY_OTHERS.add(folder)
                log.warning("warning: the folder '%s' stayed locked by another process for %g s (a 'flock' on it held "
                            "by the command that started this run?); the outputs are placed without its lock", folder,
                            FOLDER_LOCK_WAIT_SECONDS)
            return
        if not said:
            log.info("waiting for another process placing its files into '%s'", folder)
            said = True
        time.sleep(0.05)


def _set_aside(target: Path, backup: Path) -> None:
    """Rename ``target`` to ``backup``; a failure is reported as failing to replace ``target`` (the error's second
    file name), not its hidden backup: a report open in Excel on Windows was named '.a_report.csv.9595.old'."""
    try:
        replace_file(target, backup)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(backup), None, str(target)) from exc


_SET_ASIDE_NAME = re.compile(r"\.(?P<name>.+)\." + PROCESS_MARK + r"\.old")


def set_aside_path(target: Path) -> Path:
    """Where :func:`move_all_or_none` keeps a file it replaces until the new one is in place: the hidden
    ``.{name}.{mark}.old`` beside it (``mark``: this process's :func:`~.processes.process_mark`, its id, start
    time and host tag; older versions wrote ``.{name}.{pid}.old``, which are judged by the id alone; ``name``:
    :func:`set_aside_name`)."""
    return target.with_name(f".{set_aside_name(target.name, target.parent)}.{process_mark()}.old")


_SET_ASIDE_EXTRA = len(".") + len(".") + 10 + len("-") + 12 + len("@") + HOST_TAG_CHARACTERS + len(".old")
"""Characters a set-aside name adds to the output's name at most (:func:`set_aside_path`), 33."""


def set_aside_name(name: str, folder: PathLike) -> str:
    """``name`` as a set-aside file in ``folder`` holds it: whole where that name fits the file system's limit on a
    name (:func:`_longest_name`), else cut and ended with ``~`` and 10 hex digits of its SHA-256 (a label map and its
    report of one long stem never share one). An output named with more than 222 characters could not be replaced
    with --overwrite: setting the earlier file aside failed, after the whole run, with 'File name too long'."""
    return name_within(name, _longest_name(Path(folder)) - _SET_ASIDE_EXTRA)


def name_within(name: str, room: int) -> str:
    """``name`` whole where it holds at most ``room`` bytes (UTF-8), else cut and ended with ``~`` and 10 hex digits
    of its SHA-256, within ``room``: two long names that share their start stay apart."""
    if len(name.encode("utf-8", "surrogateescape")) <= room:
        return name
    import hashlib

    digest = "~" + hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    cut = name
    while len(cut) > 1 and len((cut + digest).encode("utf-8", "surrogateescape")) > room:
        cut = cut[:-1]
    return cut + digest


def longest_name(folder: PathLike) -> int:
    """The longest file name ``folder``'s file system takes, in bytes (:func:`_longest_name`)."""
    return _longest_name(Path(folder))


def _move_without_replacing(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` unless ``target`` exists, also one that appears meanwhile (FileExistsError):
    a hard link is made first where the file system has them, which fails on an existing name, then ``source``
    unlinked (a failure to is left to the temporary's own clean-up). On Windows a rename, which never replaces
    there and leaves no second name when the temporary is held open. Other failures raise as they come."""
    if sys.platform == "win32":
        os.rename(source, target)  # FileExistsError on an existing name
        return
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError:  # no hard links here (FAT, some network shares), or a folder
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target)) from None
        os.rename(source, target)  # Windows never replaces with rename
        return
    with contextlib.suppress(OSError):
        os.unlink(source)


def _rename_without_replacing(source: Path, target: Path) -> bool:
    """Rename ``source`` to ``target`` unless ``target`` exists (also one that appears meanwhile:
    :func:`_move_without_replacing`); True when done, False when not (never raises)."""
    try:
        _move_without_replacing(source, target)
    except OSError:
        return False
    return True


def place_without_replacing(source: PathLike, target: PathLike) -> None:
    """Move the finished ``source`` onto ``target`` when ``target`` does not exist, without the gap between a
    check and a rename (a file another process created meanwhile was replaced; on a POSIX file system without hard
    links the check-then-rename gap remains): OutputExistsError when it exists
    or appears, ``source`` left as it was. On Windows retried a few times when ``source`` is held open (a virus
    scanner looking at the new file), as :func:`replace_file` does."""
    waits = REPLACE_RETRY_SECONDS if sys.platform == "win32" else ()
    for wait in list(waits) + [None]:
        try:
            _move_without_replacing(Path(source), Path(target))
            return
        except FileExistsError:
            raise OutputExistsError(f"Output '{target}' appeared while writing; not overwriting it.") from None
        except PermissionError:
            if wait is None:
                raise
            time.sleep(wait)


def _recover_set_aside(backup: Path, target: Path, pid: int, group_incomplete: bool) -> str:
    """Put ``backup`` (set aside by the ended process ``pid``) back as ``target`` when that is missing, or when
    ``group_incomplete`` (that process was killed in the middle of replacing several outputs together, so
    ``target`` is its new file beside earlier ones: it is discarded, as the killed run's own rollback would have
    done); else make ``backup`` visible as ``{target}.{pid}.old`` (the killed run had replaced every output:
    ``backup`` is the only copy of the earlier version, never deleted). What was done, for the user."""
    if not os.path.lexists(target) and _rename_without_replacing(backup, target):
        return (f"'{target}' was restored: a run (process {pid}) was stopped while replacing it and had left it "
                f"hidden as '{backup.name}'; it is the earlier version, not that run's result.")
    if group_incomplete and os.path.isfile(target) and not os.path.islink(target):
        with contextlib.suppress(OSError):
            os.replace(backup, target)
            return (f"'{target}' was put back to its earlier version: a run (process {pid}) was stopped while "
                    f"replacing it together with other outputs, and that run's new file beside the earlier ones "
                    f"was discarded.")
    visible = target.with_name(f"{target.name}.{pid}.old")
    if _rename_without_replacing(backup, visible):
        return (f"an earlier version of '{target}', left hidden as '{backup.name}' by a run (process {pid}) that "
                f"was stopped while replacing it, is now '{visible}'; delete it if you do not need it.")
    return (f"'{backup}' is an earlier version of '{target}', left by a run (process {pid}) that was stopped while "
            f"replacing it; move it elsewhere or delete it.")


def _set_aside_by_ended_processes(folder: PathLike, is_output_name: Callable[[str], bool],
                                  output_name: Optional[Callable[[str], Optional[str]]] = None
                                  ) -> List[Tuple[Path, Path, int, Optional[str]]]:
    """``(backup, target, pid, start)`` (``start``: the process's start time as its name holds it, or None) of
    each file :func:`move_all_or_none` set aside in ``folder`` (hidden
    ``.{name}.{mark}.old``, :func:`set_aside_path`) for an output ``is_output_name(name)`` accepts, by a process
    that has ended (:func:`~.processes.marked_process_alive`, given when the file was set aside:
    :func:`_last_changed`). ``output_name``: the output's own name for a ``name`` cut by :func:`set_aside_name`."""
    folder = Path(folder) if str(folder) else Path(".")
    try:
        names = sorted(entry.name for entry in os.scandir(folder) if entry.name.endswith(".old"))
    except OSError:
        return []
    found = []
    for name in names:
        match = _SET_ASIDE_NAME.fullmatch(name)
        if match is None or not is_output_name(match["name"]):
            continue
        try:
            changed_at = _last_changed((folder / name).lstat())
        except OSError:  # gone meanwhile
            continue
        if not marked_process_alive(match, changed_at):
            target = (output_name(match["name"]) if output_name else None) or match["name"]
            found.append((folder / name, folder / target, int(match["pid"]), match["start"]))
    return found


def restore_set_aside_outputs_of(paths: Iterable[PathLike],
                                 folders: Sequence[Tuple[PathLike, Callable[[str], bool]]] = ()) -> List[str]:
    """Files that :func:`move_all_or_none` set aside (hidden ``.{name}.{mark}.old``) for the outputs ``paths``
    (one look into each of their folders) and for those each ``(folder, is_output_name)`` of ``folders`` accepts,
    left there by a process that has ended (killed between its two renames: the user's earlier output was
    hidden, and nothing said so). The files one ended process set aside are one group (a process is killed
    inside at most one :func:`move_all_or_none`): when any of their outputs is missing, the killed run had
    replaced only some of them, and all are put back (a label map and its report, evaluate's table, summary and
    plots stay of one run); else each is made visible as ``{name}.{pid}.old`` (:func:`_recover_set_aside`).
    Each is said in a warning (logged); returns them. Those of a running process are left alone. Never raises."""
    names_by_folder = {}  # type: Dict[Path, Dict[str, str]]
    for path in paths:  # each output by the name its set-aside file holds (set_aside_name)
        path = Path(path)
        names_by_folder.setdefault(path.parent, {})[set_aside_name(path.name, path.parent)] = path.name
    found = []
    for folder, names in names_by_folder.items():
        found += _set_aside_by_ended_processes(folder, names.__contains__, names.get)
    for folder, is_output_name in folders:
        known = {backup for backup, _, _, _ in found}  # a file both ways named (an output also in paths) is one
        found += [f for f in _set_aside_by_ended_processes(folder, is_output_name) if f[0] not in known]
    # a group is one process: its id and start time (two ended processes that had the same id are two groups)
    incomplete = {(pid, start) for _, target, pid, start in found if not os.path.lexists(target)}
    said = []
    for backup, target, pid, start in found:
        said.append(_recover_set_aside(backup, target, pid, (pid, start) in incomplete))
        log.warning("warning: %s", said[-1])
    return said


def move_all_or_none(moves: Sequence[Tuple[Path, Path]], overwrite: bool = True) -> List[Path]:
    """Move each ``(source, target)`` in turn, a target that exists first set aside beside itself (with
    ``overwrite=False``: OutputExistsError instead, also for one created at the last moment by another process,
    :func:`place_without_replacing`); when a move fails (an error, a file held open, an existing target, Ctrl-C),
    the targets already placed are removed and the files they replaced put back, so the targets are all new or
    all as they were. A file that cannot be put back stays in
    its hidden ``.<name>.<mark>.old`` (:func:`set_aside_path`) beside the target (never deleted), as does one of a process killed between
    the two renames (SIGKILL, a power cut): the next write of that output puts it back or makes it visible
    (:func:`restore_set_aside_outputs_of`). Returns the targets placed."""
    moved, placed = [], []  # (target, backup) of replaced files; targets put in place
    try:
        # every existing target is set aside before any new one is placed: a process killed among the placements
        # then leaves a set-aside output missing, which marks its group incomplete, and all are put back (set
        # aside one by one between placements, a kill after the label map's placement left it beside the earlier
        # report, probabilities and preview). Each pair is recorded before its rename, so a Ctrl-C landing on
        # the rename itself is rolled back too (the earlier output was left hidden while the run said it had
        # removed only unfinished files).
        for _, target in moves if overwrite else ():
            target = Path(target)
            if target.exists():
                backup = set_aside_path(target)
                moved.append((target, backup))
                _set_aside(target, backup)
        for source, target in moves:
            target = Path(target)
            if not overwrite:
                place_without_replacing(source, target)
                placed.append(target)
                continue
            replace_file(source, target)
            placed.append(target)
    except BaseException:
        # with a second Ctrl-C or SIGTERM held until it is done (also one landing just before the hold): one landing
        # inside it left the outputs half new, half the user's, with the user's earlier report hidden (the
        # interruption audit)
        call_with_interrupts_held(lambda: _put_back(placed, moved))
        raise
    for _, backup in moved:
        _remove_replaced(backup)
    return placed


def _put_back(placed: List[Path], moved: List[Tuple[Path, Path]]) -> None:
    """Undo :func:`move_all_or_none`'s placements: remove the new files ``placed``, and put each set-aside earlier
    version back (``moved``: ``(target, backup)``). Never raises OSError."""
    for target in placed:
        with contextlib.suppress(OSError):
            target.unlink()
    for target, backup in moved:
        if os.path.lexists(backup):  # not when the signal came before its rename
            with contextlib.suppress(OSError):
                replace_file(backup, target)


def _remove_replaced(backup: Path) -> None:
    """Remove the set-aside earlier version of a replaced output (never raises). Windows does not delete a file
    whose Read-only attribute is set (an output copied from a CD or DVD, or protected by the user), which then
    stayed hidden beside the new output and was later shown as a killed run's leftover: there the attribute is
    cleared first, as the user asked for the file to be replaced (``--overwrite``)."""
    try:
        backup.unlink()
    except PermissionError:
        if sys.platform == "win32" and _clear_read_only(backup) is not None:
            with contextlib.suppress(OSError):
                backup.unlink()
    except OSError:
        pass


def has_dicom_preamble(path: PathLike) -> bool:
    """Whether ``path`` is a readable file with the DICOM Part 10 preamble ('DICM' at byte 128)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def media_storage_sop_class(path: PathLike) -> Optional[str]:
    """The MediaStorageSOPClassUID (0002,0002) of a DICOM Part 10 file, read from its file meta header (explicit
    VR little endian, at the start of the file, so it survives a file cut short at its end; no pydicom needed);
    None when the file has no 128-byte preamble and 'DICM', or the element is not in its first 4 KiB."""
    import struct

    try:
        with open(path, "rb") as handle:
            data = handle.read(4096)
    except OSError:
        return None
    if data[128:132] != b"DICM":
        return None
    pos = 132
    while pos + 8 <= len(data):
        group, element = struct.unpack("<HH", data[pos:pos + 4])
        if group != 0x0002:
            return None
        vr = data[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            if pos + 12 > len(data):
                return None
            length, start = struct.unpack("<I", data[pos + 8:pos + 12])[0], pos + 12
        else:
            length, start = struct.unpack("<H", data[pos + 6:pos + 8])[0], pos + 8
        if element == 0x0002:
            return data[start:start + length].rstrip(b"\0 ").decode("ascii", "replace")
        pos = start + length
    return None


def is_dicom_file(path: PathLike) -> bool:
    """Whether ``path`` is a DICOM file: with the Part 10 preamble, or without it (older exports write bare data
    sets, which the series reader accepts) a header pydicom reads with a SOP Instance UID."""
    if has_dicom_preamble(path):
        return True
    try:
        import pydicom

        dataset = pydicom.dcmread(str(path), stop_before_pixels=True, force=True, specific_tags=["SOPInstanceUID"])
    except Exception:  # noqa: BLE001 - not DICOM, unreadable, or pydicom missing
        return False
    return bool(str(getattr(dataset, "SOPInstanceUID", "") or "").strip())


@contextlib.contextmanager
def _named_for_the_user(temporaries: Dict[str, Path], paths: Dict[str, PathLike]) -> Iterator[None]:
    """Errors of the writers name the output the user asked for, not its hidden temporary file (a full disk
    said "Cannot write '.../.seg.31600-3be3vrbn.tmp.mha'")."""
    from .errors import LiverTumorSegError
    names = {str(temporaries[key]): str(paths[key]) for key in temporaries}
    try:
        yield
    except LiverTumorSegError as exc:
        text = str(exc)
        for tmp, target in names.items():
            text = text.replace(tmp, target)
        if text == str(exc):
            raise
        raise type(exc)(text) from None
    except OSError as exc:
        if exc.filename is not None and str(exc.filename) in names:
            exc.filename = names[str(exc.filename)]
        raise


def make_temporary_file(folder: Path, stem: str, suffix: str) -> Path:
    """A new empty temporary file ``.{stem}.{mark}-{random}.tmp{suffix}`` in ``folder`` (``stem`` shortened by
    :func:`temporary_stem` for Windows' path limit; ``mark``: :func:`temporary_prefix`), after removing the
    temporaries of that name that killed runs left (:func:`remove_stale_temporaries`), and this computer's of any
    name once per folder (:func:`remove_this_computers_leftovers`). Mode 0600 (mkstemp's)."""
    stem = temporary_stem(folder, stem, suffix)
    with leftovers_said_together():  # the two looks may find the same file: said once
        remove_stale_temporaries(folder, f".{stem}.", ".tmp" + suffix)
        remove_this_computers_leftovers(folder)
    prefix = temporary_prefix(f".{stem}.")
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp" + suffix, dir=str(folder))
    except FileNotFoundError as exc:  # Windows' answer to a path over its limit, in a folder that exists
        too_long = _folder_too_long_error(folder, len(prefix) + _MKSTEMP_RANDOM_CHARACTERS + len(".tmp" + suffix))
        if too_long is None:
            raise
        raise too_long from exc
    os.close(fd)
    return Path(tmp)


_MKSTEMP_RANDOM_CHARACTERS = 8
"""Characters ``tempfile.mkstemp`` puts between a name's prefix and suffix."""

_SHORTEST_NII_GZ_TEMPORARY = len(".x") + _TEMPORARY_EXTRA + len(".nii.gz")
"""Characters of the shortest temporary name of a ``.nii.gz`` output on Windows (its stem cut to one character by
:func:`temporary_stem`): what :func:`check_folder_writable`'s advice on a folder path too long counts with."""


def _folder_too_long_error(folder: Path, name_length: int) -> Optional[InputError]:
    """The error for a file of ``name_length`` characters that could not be made in the existing ``folder`` because
    the whole path passes Windows' limit (:func:`_max_path`); None where that is not why (no limit here, a path
    within it, or no such folder). Windows reports such a path as not found (ERROR_PATH_NOT_FOUND), which was an
    'internal error' naming a hidden temporary file."""
    limit = _max_path()
    path_length = len(os.path.abspath(str(folder))) + 1 + name_length
    if limit is None or path_length < limit or not os.path.isdir(folder):
        return None
    longest = len(os.path.abspath(str(folder))) - (path_length - (limit - 1))
    return InputError(f"Cannot write into '{printable_path(folder)}': a file there would have a path of {path_length} "
                      f"characters (outputs are first written under a longer temporary name), beyond Windows' limit "
                      f"of {limit - 1}. Choose an output folder whose path has at most {longest} characters, or turn "
                      f"on long paths in Windows (LongPathsEnabled).")


@contextlib.contextmanager
def _temporary_beside(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` (already checked by :func:`check_can_write`; see :func:`atomic_output`),
    removed on exit unless renamed away."""
    suffix = full_suffix(path)
    stem = path.name[: max(1, len(path.name) - len(suffix))]
    folder = path.parent if str(path.parent) else Path(".")
    made = []  # type: List[Path]
    try:
        with stop_signals_held():  # a stop signal as mkstemp returned left the empty temporary behind
            made.append(make_temporary_file(folder, ascii_stem(stem), suffix))
        apply_default_permissions(made[0])
        yield made[0]
    finally:
        if made and made[0].exists():
            # one that cannot be removed (held open on Windows; after place_without_replacing, a second name of
            # the placed output) is left to a later write's clean-up (remove_stale_temporaries), not an error
            with contextlib.suppress(OSError):
                made[0].unlink()


@contextlib.contextmanager
def stop_signals_held() -> Iterator[None]:
    """The stop signals (:data:`~.training.interrupts.HELD_SIGNALS`: SIGINT, SIGTERM, SIGHUP, SIGBREAK where they
    exist, those the command line stops on) whose handler is a Python function held for a ``with`` block and
    the first one received handed to that handler when the block ends normally (dropped when it raises: its
    exception ends the run anyway): around making a temporary file or folder whose name the block records, so that a
    stop cannot land between its creation and its clean-up's knowing it (2 of 6 SIGTERMs sent as a preview's
    temporary appeared left it behind, empty; the interruption audit). Only in the main thread, where Python runs
    signal handlers; a signal whose handler is the default, ignored, or a host application's own (set outside
    Python) is left alone: Python's record of those may not be what the system has, and putting it back could
    replace the host's."""
    import signal

    from .training.interrupts import HELD_SIGNALS

    held = {}  # type: Dict[int, Any]
    if threading.current_thread() is threading.main_thread():
        for number in HELD_SIGNALS:
            handler = signal.getsignal(number)
            if callable(handler):
                held[number] = handler
    received = []  # type: List[int]
    try:
        for number in held:
            signal.signal(number, lambda signum, frame: received.append(signum))
        yield
    finally:
        for number, handler in held.items():
            signal.signal(number, handler)
    if received:
        held[received[0]](received[0], None)


WRITE_ERRNOS = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG)
"""A write's error numbers that say nothing of which file: disk full, quota exceeded, file larger than allowed."""


@contextlib.contextmanager
def sources_beside_targets(moves: Sequence[Tuple[Path, Path]]) -> Iterator[List[Tuple[Path, Path]]]:
    """``moves`` (``(source, target)`` for :func:`move_all_or_none`) with each source whose target's folder is on
    another file system (an output written through a symbolic link, :func:`through_link`, to a file elsewhere:
    a rename cannot cross file systems, 'Invalid cross-device link') copied first to a temporary beside its target
    (:func:`_temporary_beside`); those temporaries are removed on exit unless moved. The other moves are left as
    they are."""
    import shutil

    with contextlib.ExitStack() as stack:
        near = []
        for source, target in moves:
            if os.stat(source).st_dev == os.stat(Path(target).parent).st_dev:
                near.append((source, target))
                continue
            tmp = stack.enter_context(_temporary_beside(Path(target)))
            with write_errors_naming(Path(target)):
                shutil.copyfile(source, tmp)
            near.append((tmp, target))
        yield near


@contextlib.contextmanager
def write_errors_naming(path: Path) -> Iterator[None]:
    """A write error without a file name (:data:`WRITE_ERRNOS`; a failed ``write`` names no file) names ``path``,
    the output the user asked for: a report on a full disk was 'No space left for a file'. numpy's short write
    ('688128 requested and 261088 written': no error number, and a file name set would change its text) gets it
    as ``written_path`` (read by ``cli.disk_full_text``)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS and exc.filename is None:
            exc.filename = str(path)
        elif exc.errno is None and re.search(r"\d+ requested and \d+ written", str(exc)):
            exc.written_path = str(path)
        raise


@contextlib.contextmanager
def atomic_output(path: PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Context manager yielding a temporary path next to ``path``; renamed onto ``path`` on success.

    The temporary name keeps the full extension so writers that pick the format by extension work.
    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = check_can_write(path, overwrite)
    with _temporary_beside(path) as tmp_path:
        # a writer's own error names the output, not its hidden temporary ("Cannot write '.../.ct_0.<mark>.tmp.nii.gz'"
        # of a batch's label map and probability map on a full disk)
        with write_errors_naming(path), _named_for_the_user({"output": tmp_path}, {"output": path}):
            yield tmp_path
        if not overwrite and path.exists():
            raise OutputExistsError(f"Output '{path}' appeared while writing; not overwriting it.")
        if tmp_path.is_file():
            apply_output_permissions(tmp_path, path)  # the writer may have replaced the file (safetensors does)
        if overwrite:
            replace_file(tmp_path, path)
        else:  # one created since the check above is not replaced either
            place_without_replacing(tmp_path, path)


@contextlib.contextmanager
def picture_text_as_given() -> Iterator[None]:
    """Around drawing a matplotlib figure (a decorator on the plotting functions): its texts are drawn as given, and
    its "Glyph ... missing from font" warnings dropped.

    * matplotlib read text between two ``$`` as math: a case, file name or ``--title`` holding ``$\\x$`` ended the
      command with an internal error and nothing written (evaluate lost its whole evaluation to one title), and
      'case $1 and $2' was drawn as 'case 1and2' (the pictures audit). Texts made inside are plain
      (``text.parse_math`` off); a picture whose axis matplotlib would label in math text (a log axis: '$10^{-1}$')
      gives that axis plain tick labels of its own.
    * A case or file name in Chinese, Japanese or Korean in a title printed a UserWarning per character on stderr;
      the picture is written all the same (those characters as boxes), and the name is in the report's text
      anyway."""
    import warnings

    import matplotlib

    plain = {"text.parse_math": False} if "text.parse_math" in matplotlib.rcParams else {}  # matplotlib >= 3.6 (the floor)
    with warnings.catch_warnings(), matplotlib.rc_context(plain):
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
        warnings.filterwarnings("ignore", message=r"Matplotlib currently does not support", category=UserWarning)
        yield



def walk_through_links(root: PathLike) -> Iterator[Tuple[str, List[str], List[str]]]:
    """``os.walk(root)`` (top down: a caller may prune ``dirs`` in place) through linked folders too, each real folder
    once: ``Path.rglob`` and ``os.walk`` do not follow a folder that is a symbolic link, so a data set whose 'Training
    Batch 2' links to another disk lost its cases without a word (the data audit); a link that leads back up (a loop)
    is not followed again. ``dirs`` come sorted."""
    seen = set()
    for top, dirs, files in os.walk(os.fspath(root), followlinks=True):
        try:
            stat = os.stat(top)
            identity = (stat.st_dev, stat.st_ino) if stat.st_ino else os.path.realpath(top)
        except OSError:
            dirs[:] = []
            continue
        if identity in seen:
            dirs[:] = []
            continue
        seen.add(identity)
        dirs.sort()
        yield top, dirs, files


def tree_paths(root: PathLike) -> Iterator[Path]:
    """Every file and folder below ``root`` (not ``root`` itself), through linked folders too
    (:func:`walk_through_links`); paths as reached (below ``root``, not resolved)."""
    for top, dirs, files in walk_through_links(root):
        for name in list(dirs) + sorted(files):
            yield Path(top) / name
