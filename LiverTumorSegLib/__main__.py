"""``python -m LiverTumorSegLib`` is the same as the ``livertumorseg`` command."""
import sys

if __name__ == "__main__":
    try:
        from .cli import console_main
    except KeyboardInterrupt:  # Ctrl-C while the command's modules are imported: no traceback
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    console_main()
