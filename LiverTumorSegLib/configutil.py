"""Shared JSON round trip for the flat option dataclasses (augmentation, synthetic lesions).

Tuples become lists in :meth:`to_dict`; :meth:`from_dict` refuses unknown keys with an
:class:`~LiverTumorSegLib.errors.InputError` that lists the valid ones.
"""
import math
import numbers
from dataclasses import MISSING, asdict, fields
from typing import Any, Dict, Type, TypeVar

import numpy as np

from .errors import InputError

ConfigT = TypeVar("ConfigT", bound="JsonDataclassMixin")


def _number(owner: str, name: str, value: Any, whole: bool) -> Any:
    """``value`` as a finite float (or a whole int when ``whole``); numbers may come as text that reads as one
    (YAML 1.1 reads ``5e-1`` as text). InputError naming ``owner.name`` otherwise."""
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    # numbers.Real: numpy scalars too (np.int64(30) from a computed config was refused)
    if isinstance(number, (bool, np.bool_)) or not isinstance(number, numbers.Real) \
            or not math.isfinite(float(number)) or (whole and float(number) != int(number)):
        shown = f"'{value}' (text)" if isinstance(value, str) else repr(value)
        raise InputError(f"{owner}.{name} must be {'a whole number' if whole else 'a finite number'}, got {shown}.")
    return int(number) if whole else float(number)


def typed_field_value(owner: str, name: str, value: Any, default: Any, optional: bool = False) -> Any:
    """``value`` of the option ``owner.name`` as the type of its ``default``: a real true/false for booleans (the
    text "false" is true in Python), finite numbers (whole ones for integers; numeric text is read), pairs of
    them for tuples (JSON lists become tuples); an ``optional`` field (``Optional[...]``) also takes None; text
    defaults take text. InputError naming the option otherwise."""
    if value is None and (optional or default is None):
        return None
    if isinstance(value, list):
        value = tuple(value)
    if isinstance(default, bool):
        if not isinstance(value, (bool, np.bool_)):
            raise InputError(f"{owner}.{name} must be true or false, got {value!r}; write it without quotes.")
        return bool(value)
    if isinstance(default, (int, float)):
        return _number(owner, name, value, whole=isinstance(default, int))
    if isinstance(default, tuple):
        if not isinstance(value, tuple) or (isinstance(default, tuple) and len(value) != len(default)):
            raise InputError(f"{owner}.{name} must be a (low, high) pair of numbers, got {value!r}.")
        wholes = [isinstance(d, int) and not isinstance(d, bool) for d in (default or (0.0,) * len(value))]
        return tuple(_number(owner, name, v, whole) for v, whole in zip(value, wholes))
    if isinstance(default, str) and not isinstance(value, str):
        raise InputError(f"{owner}.{name} must be text, got {value!r}.")
    return value


class JsonDataclassMixin:
    """Mix into a ``@dataclass`` whose fields are JSON-compatible (numbers, strings, tuples, lists).

    After construction, every field takes its default's type (:func:`typed_field_value`: list values from
    JSON/YAML become tuples, numeric text becomes numbers, booleans must be real) and ``validate()`` runs when
    defined.
    """

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            default = f.default if f.default is not MISSING else None
            setattr(self, f.name, typed_field_value(type(self).__name__, f.name, getattr(self, f.name), default,
                                                    optional="Optional" in str(f.type)))
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
