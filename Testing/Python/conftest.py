"""pytest set-up for every test file: the seeds of torch, numpy and random are set before each test.

``--test-seed N`` (registered in the repository root's conftest.py, so that pytest takes it without a test path) or
the environment variable ``LIVERTUMORSEG_TEST_SEED`` picks the base seed (default 0); see ``seeding.py``. Hypothesis tests use the same base seed (``--hypothesis-seed`` overrides it).
The library's on-disk plan cache goes to a temporary folder (``LIVERTUMORSEG_CACHE_DIR``), and the user models folder
(``LIVERTUMORSEG_MODELS_DIR``) is an empty temporary folder: no test reads the tester's ~/.livertumorseg.
Ctrl-C (SIGINT) raises KeyboardInterrupt, as in a terminal, also when the suite was started with SIGINT ignored.
Child processes write bytecode also where the shell sets ``PYTHONDONTWRITEBYTECODE`` (``children_write_bytecode``).
"""
import os
import signal
import tempfile

import pytest

import seeding


_CACHE_DIR_MADE = []  # the plan-cache and user-models folders this run made (removed at the end of the run)
_SAVED_MODELS_DIR = []  # LIVERTUMORSEG_MODELS_DIR as the run found it (None: unset), put back at the end
_SAVED_DONT_WRITE_BYTECODE = []  # PYTHONDONTWRITEBYTECODE as the run found it (None: unset), put back at the end


def pytest_configure(config):
    seeding.set_base_seed(config.getoption("--test-seed"))
    # A shell without job control starts a background job ('nohup pytest &', 'bash -c "... &"') with SIGINT
    # ignored, Python then installs no KeyboardInterrupt handler, and the children inherit the ignore: the tests
    # that send a real SIGINT saw nothing happen (two failed in a fresh clone run that way). Restore the terminal's
    # behaviour; a handled signal is reset to the default on exec, so child processes get it too.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # the library's plan cache (plan_cache.py) goes to a folder of this run, never the user's home
    if "LIVERTUMORSEG_CACHE_DIR" not in os.environ:
        os.environ["LIVERTUMORSEG_CACHE_DIR"] = tempfile.mkdtemp(prefix="livertumorseg-test-cache-")
        _CACHE_DIR_MADE.append(os.environ["LIVERTUMORSEG_CACHE_DIR"])
    # the installed-model listing (resolve_model, 'livertumorseg models') reads the user models folder, by default
    # ~/.livertumorseg/models: every test that resolved a model read the tester's home, and a package installed there
    # (or LIVERTUMORSEG_MODELS_DIR set in the shell) was listed beside the bundled ones. An empty folder of this run.
    _SAVED_MODELS_DIR.append(os.environ.get("LIVERTUMORSEG_MODELS_DIR"))
    os.environ["LIVERTUMORSEG_MODELS_DIR"] = tempfile.mkdtemp(prefix="livertumorseg-test-models-")
    _CACHE_DIR_MADE.append(os.environ["LIVERTUMORSEG_MODELS_DIR"])
    _SAVED_DONT_WRITE_BYTECODE.append(children_write_bytecode(os.environ))


def pytest_unconfigure(config):
    """Remove the run's plan-cache folder: every run used to leave one in the temporary folder."""
    import shutil

    for folder in _CACHE_DIR_MADE:
        shutil.rmtree(folder, ignore_errors=True)
        if os.environ.get("LIVERTUMORSEG_CACHE_DIR") == folder:
            del os.environ["LIVERTUMORSEG_CACHE_DIR"]
    _CACHE_DIR_MADE.clear()
    for saved in _SAVED_MODELS_DIR:
        if saved is None:
            os.environ.pop("LIVERTUMORSEG_MODELS_DIR", None)
        else:
            os.environ["LIVERTUMORSEG_MODELS_DIR"] = saved
    _SAVED_MODELS_DIR.clear()
    for saved in _SAVED_DONT_WRITE_BYTECODE:
        put_back_dont_write_bytecode(os.environ, saved)
    _SAVED_DONT_WRITE_BYTECODE.clear()


def children_write_bytecode(environ):
    """Take ``PYTHONDONTWRITEBYTECODE`` out of ``environ`` (os.environ: what the suite's child processes inherit) and
    return its value (None: it was not set). Set in some CI and sandbox shells, it made every child process the suite
    starts (the CLI, the Slicer module's child jobs: hundreds) compile the library from source again, 0.3-0.5 s
    each: five child-heavy test files took 117-118 s with it and 88 s without (2-core CPU, 30 Nov 2026). The
    children write and reuse bytecode as Python does by default (``__pycache__``, which .gitignore lists); the
    pytest process itself keeps the setting it started with."""
    return environ.pop("PYTHONDONTWRITEBYTECODE", None)


def put_back_dont_write_bytecode(environ, saved):
    """Undo :func:`children_write_bytecode`: ``saved`` (its return value) back into ``environ``, nothing for None."""
    if saved is not None:
        environ["PYTHONDONTWRITEBYTECODE"] = saved


def pytest_collection_modifyitems(config, items):
    """Hypothesis tests draw their examples from the base seed too (unless --hypothesis-seed is given), so
    a run is repeatable and the examples change with the base seed."""
    if config.getoption("--hypothesis-seed", default=None) is not None:
        return
    for item in items:
        function = getattr(item, "obj", None)
        if getattr(function, "is_hypothesis_test", False) and \
                getattr(function, "_hypothesis_internal_use_seed", None) is None:
            import hypothesis
            hypothesis.seed(seeding.test_seed())(function)


def pytest_report_header(config):
    return f"LiverTumorSeg test seed: {seeding.base_seed()}"


@pytest.fixture(autouse=True)
def _seed_random_generators():
    """Every test starts from the same torch / numpy / random state (so it does not depend on test order)."""
    seeding.seed_everything()
    yield
