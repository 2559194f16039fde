"""``python -m LiverTumorSegLib`` is the same as the ``livertumorseg`` command."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
