"""The test suite's own pytest option, ``--test-seed N``, registered here at the repository root.

pytest takes an option only from a conftest.py it loads before reading the command line: those of the folders named
on it and their parents, and the current folder's. README's ``python -m pytest --test-seed 3`` names no folder (the
tests are found through ``testpaths``), so the option, registered in Testing/Python/conftest.py, was refused there
("unrecognized arguments: --test-seed"); from here it is found however the suite is started in the clone.
Everything else of the set-up stays in Testing/Python/conftest.py, which reads the option.
"""


def pytest_addoption(parser):
    parser.addoption("--test-seed", type=int, default=None,
                     help="base seed for the tests' random generators (default: $LIVERTUMORSEG_TEST_SEED or 0)")
