"""Python packages the segmentation child process needs, their versions, and installing them without ever
replacing the user's PyTorch.

Nothing here imports Slicer, torch or monai: versions are read from package metadata
(``importlib.metadata``), and the caller passes the Slicer actions (``confirm``, ``pip_install``,
``install_torch``), so tests run everything with fakes and never install anything.

Rules:

* torch is installed only by the PyTorch extension (``PyTorchUtilsLogic().installTorch(...,
  torchVersionRequirement=">=2.1")``, which picks the CUDA build matching the driver). A torch that is too
  old is reported, never replaced by pip.
* Every pip install runs with a constraints file pinning the installed torch (``torch==<installed>``), so
  pip's resolver picks a monai that fits that torch or fails; it cannot pull another torch from PyPI. The file
  also pins every other installed distribution except the ones being installed (Slicer's own numpy, VTK,
  SimpleITK, ...): ``slicer.util.pip_install`` of Slicer 5.6-5.10 does not protect them, and a monai or nibabel
  release asking for a newer numpy would have upgraded Slicer's. pip then fails with its reason rather than
  break Slicer.
* "Fits" is checked too: an installed monai whose own ``torch>=...`` requirement the installed torch does not
  meet counts as incompatible and is reinstalled (under the constraint) after confirmation.
"""
import contextlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

OK, MISSING, TOO_OLD, INCOMPATIBLE = "ok", "missing", "too old", "incompatible with the installed torch"


@dataclass(frozen=True)
class Requirement:
    """``module``: import name; ``distribution``: pip name; ``minimum``: lowest version that works ('' = any)."""

    module: str
    distribution: str
    minimum: str = ""

    @property
    def pip(self) -> str:
        """The pip requirement string, e.g. ``monai>=1.3``."""
        return f"{self.distribution}>={self.minimum}" if self.minimum else self.distribution


TORCH = Requirement("torch", "torch", "2.1")
TORCH_FOR_NUMPY_2 = "2.3"
"""The first torch built against numpy 2 (Slicer 5.10 holds numpy 2.0.2): an older one, which ``torch>=2.1`` allows,
cannot exchange arrays with it, and every run ended in 'internal error: RuntimeError: Numpy is not available'. With
numpy 2 installed, a torch older than this is too old (the minimum-versions audit)."""
# torch first: installed through the PyTorch extension (matching the GPU driver), the rest with pip.
REQUIREMENTS = (
    TORCH,
    Requirement("monai", "monai", "1.3"),
    Requirement("safetensors", "safetensors", "0.4"),
    Requirement("nibabel", "nibabel", "5.2"),  # 5.0 and 5.1 use np.sctypes, removed in numpy 2
    Requirement("scipy", "scipy", "1.9"),
    Requirement("SimpleITK", "SimpleITK", "2.2"),
    Requirement("yaml", "pyyaml", "6.0"),
    Requirement("tqdm", "tqdm", "4.62.1"),  # 4.60-4.62.0 wrote our warnings to stdout beside a bar
)


def version_tuple(text: str) -> Tuple[int, ...]:
    """Leading numeric release of a version string: ``"2.1.2+cu118"`` -> ``(2, 1, 2)``; ``""`` -> ``()``."""
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", text or "")
    return tuple(int(p) for p in match.group(1).split(".")) if match else ()


def version_at_least(installed: str, minimum: str) -> bool:
    """``installed >= minimum`` on the numeric release parts (missing parts count as 0)."""
    a, b = version_tuple(installed), version_tuple(minimum)
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)) >= b + (0,) * (width - len(b))


def installed_version(distribution: str) -> Optional[str]:
    """Version of an installed distribution from its metadata (nothing imported), ``None`` if absent."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def distribution_requires(distribution: str) -> List[str]:
    """The requirement strings of an installed distribution (``[]`` when absent)."""
    try:
        return list(importlib.metadata.requires(distribution) or [])
    except importlib.metadata.PackageNotFoundError:
        return []


def minimum_torch_of(requires: Sequence[str]) -> str:
    """The highest ``torch>=X`` lower bound among unconditional requirement strings ('' when none)."""
    best = ""
    for text in requires:
        if ";" in text and "extra" in text.split(";", 1)[1]:
            continue  # an optional extra, not needed
        spec = text.split(";", 1)[0].replace(" ", "")
        if not re.match(r"torch(?![\w-])", spec):
            continue
        for bound in re.findall(r">=([\w.+]+)", spec):
            if not best or version_at_least(bound, best):
                best = bound
    return best


@dataclass
class RequirementStatus:
    """``state``: ok | missing | too old | incompatible with the installed torch; ``version`` installed."""

    requirement: Requirement
    state: str
    version: Optional[str] = None
    detail: str = ""

    def describe(self) -> str:
        if self.state == MISSING:
            return f"{self.requirement.pip} (not installed)"
        if self.state == TOO_OLD:
            if self.detail:  # a torch too old for the installed numpy
                return f"torch>={TORCH_FOR_NUMPY_2} (installed: {self.version}; {self.detail})"
            return f"{self.requirement.pip} (installed: {self.version})"
        if self.state == INCOMPATIBLE:
            return f"{self.requirement.distribution} {self.version} ({self.detail})"
        return f"{self.requirement.distribution} {self.version}"


def check_requirements(requirements: Sequence[Requirement] = REQUIREMENTS,
                       version_of: Callable[[str], Optional[str]] = installed_version,
                       requires_of: Callable[[str], List[str]] = distribution_requires,
                       find_spec: Callable[[str], object] = importlib.util.find_spec) -> List[RequirementStatus]:
    """Status of every requirement, from metadata only (no import). A distribution with metadata whose module
    cannot be found counts as missing; monai's own torch bound is checked against the installed torch."""
    torch_version = version_of("torch")
    statuses = []
    for requirement in requirements:
        version = version_of(requirement.distribution)
        try:
            importable = find_spec(requirement.module) is not None
        except (ImportError, ValueError):
            importable = False
        if version is None or not importable:
            statuses.append(RequirementStatus(requirement, MISSING))
        elif requirement.minimum and not version_at_least(version, requirement.minimum):
            statuses.append(RequirementStatus(requirement, TOO_OLD, version))
        elif (requirement.distribution == "torch" and version_at_least(version_of("numpy") or "0", "2")
              and not version_at_least(version, TORCH_FOR_NUMPY_2)):
            statuses.append(RequirementStatus(requirement, TOO_OLD, version,
                                              f"it is built for numpy 1, and numpy {version_of('numpy')} is "
                                              f"installed"))
        elif requirement.distribution == "monai" and torch_version:
            needs = minimum_torch_of(requires_of("monai"))
            if needs and not version_at_least(torch_version, needs):
                statuses.append(RequirementStatus(requirement, INCOMPATIBLE, version,
                                                  f"needs torch>={needs}, installed torch {torch_version}"))
            else:
                statuses.append(RequirementStatus(requirement, OK, version))
        else:
            statuses.append(RequirementStatus(requirement, OK, version))
    return statuses


def problems(statuses: Sequence[RequirementStatus]) -> List[RequirementStatus]:
    return [s for s in statuses if s.state != OK]


class DependencyDeclinedError(Exception):
    """The user declined installing packages the segmentation needs."""


class DependencyError(Exception):
    """The packages cannot be put right automatically; the message says what to do."""


DOWNLOAD_WITH_TORCH = ("This downloads about 3 GB (PyTorch with its NVIDIA GPU libraries; about 200 MB on a computer "
                       "without an NVIDIA GPU) and can take many minutes.")
DOWNLOAD_WITHOUT_TORCH = "This downloads about 10 MB and can take a few minutes."
"""How much the install downloads, said before it starts (it said "several hundred MB" either way). Wheel sizes
(Linux, Python 3.11): torch 2.14.1 from PyPI with the nvidia-* wheels it pulls 2.74 GB, torch 2.13.0+cpu 192 MB;
the others about 6 MB together (monai 1.6.1 1.7 MB, nibabel 5.4.2 3.3 MB, safetensors, pyyaml, tqdm under 1 MB
each). scipy and SimpleITK come with Slicer 5.6-5.10 at versions above the minimums (docs/slicer.md), so are not
downloaded there."""


def confirmation_text(to_fix: Sequence[RequirementStatus]) -> str:
    """The question shown before installing: what will be installed and how."""
    lines = "\n".join(f"  - {s.describe()}" for s in to_fix)
    with_torch = any(s.requirement.module == "torch" for s in to_fix)
    text = (f"Liver Tumor Segmentation needs these Python packages in Slicer:\n{lines}\n\n"
            f"Install them now? {DOWNLOAD_WITH_TORCH if with_torch else DOWNLOAD_WITHOUT_TORCH}")
    if with_torch:
        text += ("\nPyTorch is installed by the PyTorch extension (PyTorchUtils), which picks the build that "
                 "matches your GPU driver.")
    if with_torch:  # PyTorch Utils installs torch and its own dependencies without this module's pins
        text += ("\nThe packages this module installs are installed to fit the packages Slicer already has (numpy, "
                 "VTK, ...), which they never replace; PyTorch and the packages it needs are installed by the "
                 "PyTorch extension as it does.")
    else:
        text += ("\nYour installed PyTorch and the packages Slicer already has (numpy, VTK, ...) are never replaced: "
                 "the new packages are installed to fit them.")
    return text


DECLINED_MESSAGE = ("Liver Tumor Segmentation needs the packages listed before. Nothing was installed. Click Segment, "
                    "Update lesion table or Compare again to install them. (Not with a plain slicer.util.pip_install: "
                    "pip may then replace the installed PyTorch, e.g. by a CPU-only one, or Slicer's own packages.)")
"""Said when the install is declined; the install is offered by Segment, Update lesion table, Compare and the
self-test, so no one button is named as the way back. It also pointed to ``slicer.util.pip_install()``, which has no
pins: for a monai whose newest release needs a newer torch than the installed one (monai 1.5 needs torch >= 2.4.1),
pip upgrades torch from PyPI, whose Windows wheels are CPU-only, replacing the CUDA build PyTorch Utils chose."""


def too_old_torch_message(version: str, why: str = "") -> str:
    """What to do about an installed torch older than :data:`TORCH`'s minimum. The PyTorch extension has no update:
    its *Install PyTorch* button only says "PyTorch X is already installed" while any torch is installed, and its
    version field "has no effect if PyTorch is already installed" (PyTorchUtils.py ``onInstallTorch`` and the tool
    tip in PyTorchUtils.ui, fepegar/SlicerPyTorch). So the way is: uninstall there, restart, and let this module
    install a current one through the extension (the build for the GPU driver)."""
    needs = f"torch>={TORCH.minimum}" if not why else f"torch>={TORCH_FOR_NUMPY_2} ({why})"
    return (f"PyTorch {version} is too old; LiverTumorSeg needs {needs}. Other modules may use this "
            f"PyTorch, so it is not replaced here. To replace it: open the PyTorch Utils module (Utilities), click "
            f"'Uninstall PyTorch', then 'Restart the application'; after the restart click Segment, Update lesion table "
            f"or Compare again: it offers to install a current PyTorch through the PyTorch extension (the build for your "
            f"GPU driver).")


NO_PYTORCH_EXTENSION_MESSAGE = ("PyTorch is missing and the PyTorch extension is not installed. Install the 'PyTorch' "
                                "extension from the Extensions Manager, restart Slicer and try again. Nothing was "
                                "installed.")
"""Said, before any question, when torch is missing and the PyTorch extension that installs it is not there (the
question promised a PyTorch install by that extension; after OK nothing could be installed)."""


def torch_constraint_file(torch_version: str, folder: Optional[str] = None,
                          also_pinned: Sequence[Tuple[str, str]] = ()) -> str:
    """Write a pip constraints file pinning ``torch==<torch_version>`` (local build tag kept) and each
    ``(name, version)`` of ``also_pinned``; returns its path. The caller removes it."""
    handle, path = tempfile.mkstemp(prefix="livertumorseg-constraints-", suffix=".txt", dir=folder)
    with os.fdopen(handle, "w", encoding="utf-8") as f:
        f.write(f"torch=={torch_version}\n")
        for name, version in also_pinned:
            f.write(f"{name}=={version}\n")
    return path


def installed_distributions() -> List[Tuple[str, str]]:
    """``(name, version)`` of every distribution installed in this Python (Slicer's own included)."""
    found = {}
    for distribution in importlib.metadata.distributions():
        name = (distribution.metadata["Name"] or "").strip()
        if name and distribution.version and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            found.setdefault(_normalized(name), (name, distribution.version))
    return sorted(found.values())


def _normalized(name: str) -> str:
    """A distribution name as pip compares it (PEP 503: case and runs of -_. do not matter)."""
    return re.sub(r"[-_.]+", "-", name).lower()


PEP440_VERSION = re.compile(
    r"v?(?:[0-9]+!)?[0-9]+(?:\.[0-9]+)*"  # epoch, release
    r"(?:[-_.]?(?:a|b|c|rc|alpha|beta|pre|preview)[-_.]?[0-9]*)?"  # pre-release
    r"(?:-[0-9]+|[-_.]?(?:post|rev|r)[-_.]?[0-9]*)?"  # post-release
    r"(?:[-_.]?dev[-_.]?[0-9]*)?"  # development release
    r"(?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?",  # local version label
    re.IGNORECASE)
"""A version pip accepts after ``==`` in a constraints file (PEP 440's grammar, as the ``packaging`` library's
``VERSION_PATTERN`` spells it)."""


def pinnable(version: str) -> bool:
    """Whether ``name==version`` is a line pip accepts. pip 24.1 and later reject the whole constraints file over
    one non-PEP 440 version: with ``weirdpkg==1.0-custom`` in it, pip 24.1 and 25.0 stopped at "Invalid
    requirement" and installed nothing, while pip 23.2 and 24.0 accepted it (all four tried here, 27 Nov 2026)."""
    return PEP440_VERSION.fullmatch(version.strip()) is not None


def pins_besides(to_install: Sequence["RequirementStatus"], installed: Sequence[Tuple[str, str]]
                 ) -> List[Tuple[str, str]]:
    """The installed distributions to keep at their versions while ``to_install`` is installed: all but torch
    (pinned on its own), the ones being installed, and any whose version pip cannot read in a constraints file
    (see :func:`pinnable`; such a package is left unprotected rather than failing every install)."""
    changing = {_normalized(s.requirement.distribution) for s in to_install} | {"torch"}
    return [(name, version) for name, version in installed
            if _normalized(name) not in changing and pinnable(version)]


def pip_requirement(status: RequirementStatus) -> str:
    """What pip is asked for: the requirement, and for a monai that does not fit the installed torch also
    ``<installed version`` (newer monai releases need newer torch; pip's resolver then picks the newest older
    release that fits the pinned torch)."""
    if status.state == INCOMPATIBLE and status.version:
        return f"{status.requirement.pip},<{status.version}"
    return status.requirement.pip


def pip_arguments(to_install: Sequence[RequirementStatus], constraint_path: str) -> List[str]:
    """``pip install`` arguments (a list, as ``slicer.util.pip_install`` takes it) for ``to_install`` under
    the torch constraint."""
    return [pip_requirement(s) for s in to_install] + ["-c", constraint_path]


class _LogLines(logging.Handler):
    """Every message logged (root logger) while installed, split into lines."""

    def __init__(self):
        super().__init__()
        self.lines: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.extend(str(record.getMessage()).splitlines())
        except Exception:  # noqa: BLE001 - a message that cannot be formatted is not pip's
            pass


class _StdoutLines:
    """Stands in for ``sys.stdout``: writes go on to ``stream`` and are also kept, split into lines."""

    def __init__(self, stream):
        self._stream, self._partial = stream, ""
        self.lines: List[str] = []

    def write(self, text):
        self._partial += str(text)
        *complete, self._partial = self._partial.split("\n")
        self.lines.extend(line.rstrip("\r") for line in complete)
        return self._stream.write(text) if self._stream is not None else len(text)

    def flush(self):
        if self._stream is not None:
            self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextlib.contextmanager
def recorded_output():
    """Record what a Slicer install prints or logs while the block runs; yields a callable giving those lines.

    ``slicer.util.pip_install`` (and PyTorchUtils' ``installTorch``, through ``slicer.util._executePythonModule``)
    hands each line pip prints to ``slicer.util.logProcessOutput``, which logs it with ``logging.info`` (read in
    an undated Slicer 4.x-era util.py) or prints it (Slicer 5.8.0's log tags pip's lines ``[Stream]``); the
    ``CalledProcessError`` it raises says only the command and exit status. Both routes are recorded (and still go
    where they went); the longer record is given."""
    log_lines, root = _LogLines(), logging.getLogger()
    stdout_lines = _StdoutLines(sys.stdout)
    root.addHandler(log_lines)
    sys.stdout = stdout_lines
    try:
        yield lambda: max(log_lines.lines, stdout_lines.lines, key=len)
    finally:
        if sys.stdout is stdout_lines:
            sys.stdout = stdout_lines._stream
        root.removeHandler(log_lines)


PIP_REASON_LINES = 12
"""At most this many of pip's lines (from its first ``ERROR:`` line on, blank ones dropped) are quoted in the error
message. pip 23.0's report of a version conflict (monai>=1.5 against a pinned torch 2.1.2, run here on Python 3.9)
is 10 such lines; pip's "no internet" failure 2 (``Could not find a version`` / ``No matching distribution``)."""

CONNECTION_TROUBLE = ("Failed to establish a new connection", "NewConnectionError", "ProxyError", "SSLError",
                      "ConnectTimeoutError", "Read timed out", "Temporary failure in name resolution")
"""pip/urllib3 texts of a package index that could not be reached (pip 23.0 with no server at the index address
printed 'NewConnectionError(... Failed to establish a new connection ...)' in its retry warning)."""


def pip_reason(lines: Sequence[str]) -> List[str]:
    """pip's own explanation among ``lines``: from its first ``ERROR:`` line on, blank lines dropped, at most
    :data:`PIP_REASON_LINES` (the last of them then ``...``)."""
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ERROR:")), None)
    if start is None:
        return []
    reason = [line.rstrip() for line in lines[start:] if line.strip()]
    return reason if len(reason) <= PIP_REASON_LINES else reason[:PIP_REASON_LINES - 1] + ["..."]


def install_failure_message(what: str, error: subprocess.CalledProcessError, lines: Sequence[str]) -> str:
    """What the user reads when installing ``what`` failed: pip's reason (from ``lines``, what the install printed),
    a likely cause, and where pip's whole output is. Slicer's own ``CalledProcessError`` text (the command line and
    'returned non-zero exit status 1') says none of that."""
    reason = pip_reason(lines)
    text = f"Installing {what} failed (pip ended with exit status {error.returncode})."
    if reason:
        text += "\npip said:\n" + "\n".join(f"  {line}" for line in reason)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    if any(marker in line for line in lines for marker in CONNECTION_TROUBLE):
        text += ("\nThe package index could not be reached: check the internet connection (and proxy or firewall "
                 "settings), then try again.")
    elif any("ResolutionImpossible" in line or "conflicting dependencies" in line for line in reason):
        text += ("\nNo release fits the packages already installed (PyTorch and Slicer's own packages are kept at "
                 "their versions); see the conflict above.")
    elif any("No matching distribution" in line for line in reason):
        text += (f"\npip found no release for this Slicer's Python {python} that fits the packages already "
                 "installed, or could not reach the package index (check the internet connection).")
    text += "\npip's whole output is in the Python console (View > Python Console) and the application log."
    return text


USER_CANCELLED_INSTALL_ERRORS = ("InstallationAbortedError",)
"""Names of the exceptions Slicer's installer raises when the user cancels its own question: Slicer 5.11's
``slicer.packaging.pip_install`` asks "Install dependencies?" itself (``interactive=True`` by default) and raises
``InstallationAbortedError(command, dependee)`` on Cancel, which is no ``CalledProcessError``; the panel showed it
as "The required Python packages are not ready: (['monai>=1.3', '-c', ...], ...)". Compared by name: the class lives
in a module only newer Slicers have."""


def asked_once(pip_install: Callable[..., object]) -> Callable[[List[str]], object]:
    """``pip_install`` (Slicer's ``slicer.util.pip_install`` or its 5.11 ``slicer.packaging`` successor) wrapped for
    :func:`ensure_requirements`, which has already asked the user: where it takes ``interactive`` (5.11+) it is
    given ``interactive=False`` so that Slicer does not ask a second time, and a Cancel of Slicer's own question
    (:data:`USER_CANCELLED_INSTALL_ERRORS`) becomes :class:`DependencyDeclinedError` with :data:`DECLINED_MESSAGE`.
    Other errors (``CalledProcessError`` of a failed pip) pass through unchanged."""
    import inspect

    try:
        parameters = inspect.signature(pip_install).parameters
        # slicer.util.pip_install(requirements, **kwargs) of Slicer 5.11+ hands its keywords to slicer.packaging's,
        # whose interactive defaults to True: Slicer asked its own question after the module's (helper-406's audit)
        takes_interactive = "interactive" in parameters or any(
            parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values())
    except (TypeError, ValueError):  # a builtin or a wrapped callable without a signature
        takes_interactive = False

    def install(args: List[str]) -> object:
        try:
            if takes_interactive:
                try:
                    return pip_install(args, interactive=False)
                except TypeError as error:  # keywords that reach something without 'interactive': asked as before
                    if "interactive" not in str(error):
                        raise
            return pip_install(args)
        except Exception as error:
            if type(error).__name__ in USER_CANCELLED_INSTALL_ERRORS:
                raise DependencyDeclinedError(DECLINED_MESSAGE) from error
            raise

    return install


def ensure_requirements(confirm: Callable[[str], bool], pip_install: Callable[[List[str]], None],
                        install_torch: Optional[Callable[[str], object]],
                        requirements: Sequence[Requirement] = REQUIREMENTS,
                        version_of: Callable[[str], Optional[str]] = installed_version,
                        requires_of: Callable[[str], List[str]] = distribution_requires,
                        find_spec: Callable[[str], object] = importlib.util.find_spec,
                        installed: Callable[[], List[Tuple[str, str]]] = installed_distributions
                        ) -> List[RequirementStatus]:
    """Check versions; after ``confirm(question)`` install what is missing, too old or incompatible.

    ``install_torch(version_requirement)`` installs torch (the PyTorch extension's ``installTorch`` with
    ``torchVersionRequirement``) and returns the module or ``None``; ``None`` as the callable means the
    PyTorch extension is missing. ``pip_install(args)`` gets :func:`pip_arguments` (torch pinned, and every
    other distribution ``installed()`` lists that is not being installed).
    Returns the statuses that were fixed. Raises :class:`DependencyDeclinedError` when the user says no,
    :class:`DependencyError` when torch is missing/too old and cannot be installed here, when pip fails (a
    ``CalledProcessError`` from ``pip_install`` or ``install_torch``: the message quotes pip's reason, see
    :func:`install_failure_message`), or when a check after installing still fails.
    """
    check = lambda: check_requirements(requirements, version_of, requires_of, find_spec)  # noqa: E731
    to_fix = problems(check())
    if not to_fix:
        return []
    torch_status = next((s for s in to_fix if s.requirement.module == "torch"), None)
    if torch_status is not None and torch_status.state == TOO_OLD:
        raise DependencyError(too_old_torch_message(torch_status.version, torch_status.detail))
    if torch_status is not None and install_torch is None:  # said before the question: OK could install nothing
        raise DependencyError(NO_PYTORCH_EXTENSION_MESSAGE)
    if not confirm(confirmation_text(to_fix)):
        raise DependencyDeclinedError(DECLINED_MESSAGE)

    def recheck() -> List[RequirementStatus]:
        """What is still not right, checked after an install. The import system's finders cache each folder's
        listing: one read before the install (the first check) may not list the packages just installed, and
        find_spec would call them missing; so the caches are invalidated first."""
        importlib.invalidate_caches()
        return problems(check())

    if torch_status is not None:
        with recorded_output() as printed:
            try:
                # with numpy 2 (Slicer 5.10+) a torch older than 2.3 is counted too old: asked for as the check
                # reads it (">=2.1" installed a 2.2 the check then refused, with a 'restart' that changed nothing)
                numpy_2 = version_at_least(version_of("numpy") or "0", "2")
                torch_module = install_torch(f">={TORCH_FOR_NUMPY_2 if numpy_2 else TORCH.minimum}")
            except subprocess.CalledProcessError as error:
                raise DependencyError(install_failure_message(
                    "PyTorch (through the PyTorch extension)", error, printed())) from error
        if torch_module is None:
            raise DependencyError("PyTorch was not installed. Open the PyTorch Utils module to install it, "
                                  "then try again.")
    after_torch = recheck()  # torch may be new, and may have brought others
    torch_version = version_of("torch")
    if not torch_version:
        raise DependencyError("PyTorch is still not installed; install it in the PyTorch Utils module.")
    _refuse_a_torch_still_too_old(after_torch)  # before the others are pinned to it (pip's failure hid the cause)
    rest = [s for s in after_torch if s.requirement.module != "torch"]
    if rest:
        constraint = torch_constraint_file(torch_version, also_pinned=pins_besides(rest, installed()))
        try:
            with recorded_output() as printed:
                pip_install(pip_arguments(rest, constraint))
        except subprocess.CalledProcessError as error:
            names = ", ".join(s.requirement.distribution for s in rest)
            raise DependencyError(install_failure_message(names, error, printed())) from error
        finally:
            os.remove(constraint)
    remaining = recheck()
    _refuse_a_torch_still_too_old(remaining)
    if remaining:
        raise DependencyError("After installing, these packages are still not right: "
                              + "; ".join(s.describe() for s in remaining)
                              + ". Restart Slicer and try again.")
    return list(to_fix)


def _refuse_a_torch_still_too_old(statuses: Sequence[RequirementStatus]) -> None:
    """DependencyError with :func:`too_old_torch_message` when ``statuses`` (checked after an install) hold a torch
    that is too old: the newest the PyTorch extension could install for this computer, which a restart installs
    again ('Restart Slicer and try again' was the advice)."""
    old_torch = next((s for s in statuses if s.requirement.module == "torch" and s.state == TOO_OLD), None)
    if old_torch is not None:
        raise DependencyError(too_old_torch_message(old_torch.version, old_torch.detail))


def missing_summary(statuses: Sequence[RequirementStatus]) -> str:
    """One line for the self-test's skip message: what is not right."""
    return ", ".join(s.describe() for s in problems(statuses))


def self_test_skip_reason(statuses: Sequence[RequirementStatus], testing_mode: bool,
                          install: Callable[[], object]) -> str:
    """Why the module's self-test must be skipped ('' = run it). Missing packages never fail the self-test:

    * nothing wrong -> '';
    * run by a person (not testing mode) -> ``install()`` is offered (it asks and installs, see
      :func:`ensure_requirements`); '' when that worked, else the reason with what went wrong (declined too);
    * testing mode (ctest; nothing may be installed) -> the reason.
    """
    wrong = problems(statuses)
    if not wrong:
        return ""
    reason = f"LiverTumorSeg self-test skipped: Python packages not ready ({missing_summary(wrong)})."
    if testing_mode:
        return reason + " Install them (click Segment once; it asks first) and run the test again."
    try:
        install()
    except Exception as exc:  # noqa: BLE001 - declined or failed: skip with the reason
        return f"{reason} {exc}"
    return ""
