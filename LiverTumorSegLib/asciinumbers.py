"""Whether text is a whole number as ``int`` reads it, in ASCII digits only.

``str.isdigit`` is also true of '²' (and of other Unicode digits a latin-1 header byte or a file name can hold),
which ``int`` refuses with ValueError; ``lstrip("-").isdigit()`` let '--1' through. Every place that turns text into
a number of voxels, a label, a case number or a device index asks here.
"""
import re

_ASCII_INTEGER = re.compile(r"-?[0-9]+")


def is_ascii_digits(text: str) -> bool:
    """Whether ``text`` is one or more ASCII digits ('0'-'9'), no sign."""
    return text.isascii() and text.isdigit()


def is_ascii_integer(text: str) -> bool:
    """Whether ``text`` is an optional '-' and one or more ASCII digits."""
    return _ASCII_INTEGER.fullmatch(text) is not None
