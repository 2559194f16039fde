"""User text files as Windows programs save them, for tests of the readers of case lists and training lists."""
from typing import Sequence

WINDOWS_CSV_FORMATS = [("utf-16", ","), ("utf-16", "\t"), ("utf-8-sig", ","), ("utf-8", ";")]
"""(encoding, separator) of a CSV saved by Windows PowerShell 5.1's ``>`` or ``Export-Csv -Encoding Unicode``
(UTF-16 LE with a byte-order mark), Excel's "Unicode Text" (the same, tab-separated), Excel's "CSV UTF-8" (with a
byte-order mark) and Excel's "CSV" where the decimal mark is a comma (semicolon-separated)."""


def windows_csv_bytes(rows: Sequence[Sequence[str]], encoding: str, separator: str) -> bytes:
    """``rows`` (the header first) as the bytes of a CSV file in ``encoding`` with ``separator`` and Windows line
    ends; the cells must not hold the separator (no quoting is done)."""
    return "".join(separator.join(row) + "\r\n" for row in rows).encode(encoding)
