"""Shared JSON round trip for the flat option dataclasses (augmentation, synthetic lesions).

Tuples become lists in :meth:`to_dict`; :meth:`from_dict` refuses unknown keys with an
:class:`~LiverTumorSegLib.errors.InputError` that lists the valid ones.
"""
from dataclasses import asdict, fields
from typing import Any, Dict, Type, TypeVar

from .errors import InputError

ConfigT = TypeVar("ConfigT", bound="JsonDataclassMixin")


class JsonDataclassMixin:
    """Mix into a ``@dataclass`` whose fields are JSON-compatible (numbers, strings, tuples, lists).

    After construction, list values (from JSON/YAML) become tuples and ``validate()`` runs when defined.
    """

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, list):
                setattr(self, f.name, tuple(value))
        validate = getattr(self, "validate", None)
        if validate is not None:
            validate()

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-compatible dict (tuples become lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: Type[ConfigT], data: Dict[str, Any]) -> ConfigT:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`InputError`."""
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError("Unknown %s keys %s; valid keys: %s." % (cls.__name__, unknown, sorted(known)))
        return cls(**data)
