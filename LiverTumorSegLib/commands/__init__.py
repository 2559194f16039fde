"""Subcommands of the ``livertumorseg`` CLI; see :mod:`LiverTumorSegLib.cli` for the contract."""
