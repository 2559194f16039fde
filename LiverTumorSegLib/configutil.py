"""Shared JSON round trip for the flat option dataclasses (augmentation, synthetic lesions).

Tuples become lists in :meth:`to_dict`; :meth:`from_dict` refuses unknown keys with an
:class:`~LiverTumorSegLib.errors.InputError` that lists the valid ones.
"""
import math
import numbers
from dataclasses import MISSING, asdict, fields
from typing import Any, Dict, Iterable, Type, TypeVar

import numpy as np

from .errors import InputError

ConfigT = TypeVar("ConfigT", bound="JsonDataclassMixin")


def close_key_hint(unknown: Iterable[Any], known: Iterable[Any]) -> str:
    """`` (zoom_probabilty: did you mean zoom_probability?)`` for each of the ``unknown`` keys that is close to one
    of the ``known`` ones (difflib, as for the top-level training options), '' when none is: a misspelt key of a
    nested option (augmentation, lesions, model options, preprocessing) was answered with the whole list of valid
    keys only, 39 for augmentation, to search by eye."""
    import difflib

    names = sorted(str(key) for key in known)
    hints = []
    for key in sorted(str(key) for key in unknown):
        found = difflib.get_close_matches(key.replace("-", "_"), names, n=1, cutoff=0.6)
        if found:
            hints.append(f"{key}: did you mean {found[0]}?")
    return f" ({'; '.join(hints)})" if hints else ""


def shown_value(value: Any) -> str:
    """A value as an error message quotes it: text marked as text (``'false' (text)``), anything else as repr."""
    return f"'{value}' (text)" if isinstance(value, str) else repr(value)


MAX_WHOLE_NUMBER = 2 ** 63 - 1
"""The largest size of a whole number an option file or training option takes (numpy's and torch's int64): a larger
one ended in 'internal error: OverflowError: int too large to convert to float' (401 digits), and one of 20 digits
was refused as 'must be a whole number', which it is."""


def _shown_large(number: Any) -> str:
    """A whole number too large for :data:`MAX_WHOLE_NUMBER` as a message shows it: itself up to 30 digits, else its
    digit count (a YAML file's 5000-digit number would fill the terminal)."""
    size = abs(int(number))
    digits = max(1, int((size.bit_length() - 1) * math.log10(2)))  # str() refuses over 4300 digits (Python 3.11)
    while 10 ** digits <= size:
        digits += 1
    return str(int(number)) if digits <= 30 else f"a number of {digits} digits"


def typed_scalar(what: str, value: Any, default: Any, whole_from_text: bool = True) -> Any:
    """``value`` as the type of its scalar ``default`` (the one rule for every option file: top-level training
    options and the nested augmentation / lesion ones). Booleans must be real true/false (the text "false" is
    true in Python); numbers must be finite (numpy scalars too), whole for an integer default, and may come as
    text that reads as a number (YAML 1.1 reads ``5e-1`` as text; for whole numbers only with
    ``whole_from_text``); text must be text. Other defaults take the value as it is. InputError starting with
    ``what`` (e.g. ``"Option lr in config.yaml"``) otherwise."""
    if isinstance(default, bool):
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise InputError(f"{what} must be true or false, got {shown_value(value)}; write it without quotes.")
    if isinstance(default, (int, float)):
        whole = isinstance(default, int)
        number = value
        if isinstance(value, str) and (whole_from_text or not whole):
            try:
                number = float(value)
            except ValueError:
                number = None
        integral = isinstance(number, numbers.Integral) and not isinstance(number, (bool, np.bool_))
        if integral and abs(int(number)) > MAX_WHOLE_NUMBER:  # float() of it overflowed: an internal error
            span = f" from {-MAX_WHOLE_NUMBER} to {MAX_WHOLE_NUMBER}" if whole else ""
            raise InputError(f"{what} must be {'a whole number' if whole else 'a finite number'}{span}, got "
                             f"{_shown_large(number)}.")
        if isinstance(number, (bool, np.bool_)) or not isinstance(number, numbers.Real) \
                or not math.isfinite(float(number)) or (whole and not integral and float(number) != int(number)):
            raise InputError(f"{what} must be {'a whole number' if whole else 'a finite number'}, got "
                             f"{shown_value(value)}.")
        return int(number) if whole else float(number)
    if isinstance(default, str) and not isinstance(value, str):
        raise InputError(f"{what} must be text, got {shown_value(value)}.")
    return value


def typed_field_value(owner: str, name: str, value: Any, default: Any, optional: bool = False) -> Any:
    """``value`` of the option ``owner.name`` as the type of its ``default`` (:func:`typed_scalar`), pairs of
    numbers for tuples (JSON lists become tuples); an ``optional`` field (``Optional[...]``) also takes None.
    InputError naming the option otherwise."""
    if value is None and (optional or default is None):
        return None
    what = f"{owner}.{name}"
    if isinstance(value, list):
        value = tuple(value)
    if isinstance(default, tuple):
        if not isinstance(value, tuple) or len(value) != len(default):
            raise InputError(f"{what} must be a (low, high) pair of numbers, got {value!r}.")
        return tuple(typed_scalar(what, v, d) for v, d in zip(value, default))
    return typed_scalar(what, value, default)


def is_hu_field(name: str) -> bool:
    """Whether the option ``name`` is in Hounsfield units (``fill_hu``, ``noise_std_hu``, ``hu_shift_range``,
    ``hypo_contrast_hu``; not ``hu_scale_range``, a factor)."""
    words = name.split("_")
    return "hu" in words and "scale" not in words and "probability" not in words


def _check_hu_fields(config: Any) -> None:
    """Refuse an HU option (:func:`is_hu_field`) of ``config`` beyond :data:`preprocessing.config.HU_SETTING_RANGE`
    (beyond any CT value, and float32-safe): ``fill_hu: 1e300``, ``noise_std_hu: [1e300, 1e300]`` or
    ``hu_shift_range: [1e300, 1e300]`` in a training recipe were taken, and every augmented patch came out
    non-finite (NaN and inf in float32), found only once training ran on them."""
    from .preprocessing.config import HU_SETTING_RANGE

    low, high = HU_SETTING_RANGE
    for f in fields(config):  # type: ignore[arg-type]
        value = getattr(config, f.name)
        values = value if isinstance(value, tuple) else (value,)
        if not is_hu_field(f.name) or not all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                                              for v in values):
            continue
        if not all(low <= float(v) <= high for v in values):
            default = f.default if f.default is not MISSING else None
            default = list(default) if isinstance(default, tuple) else default
            raise InputError(f"{type(config).__name__}.{f.name} = {value!r} is beyond any CT value: give HU from "
                             f"{low:g} to {high:g} (its default is {default!r}).")


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
        _check_hu_fields(self)
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
            raise InputError("Unknown %s keys %s%s; valid keys: %s." % (cls.__name__, unknown,
                                                                     close_key_hint(unknown, known), sorted(known)))
        return cls(**data)
