"""Shared JSON round trip for the flat option dataclasses (augmentation, synthetic lesions).

Tuples become lists in :meth:`to_dict`; :meth:`from_dict` refuses unknown keys with an
:class:`~LiverTumorSegLib.errors.InputError` that lists the valid ones.
"""
import math
import numbers
from dataclasses import MISSING, asdict, fields
from typing import Any, Dict, Iterable, Optional, Tuple, Type, TypeVar

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


def short_repr(value: Any, limit: int = 200) -> str:
    """``repr(value)`` cut to about ``limit`` characters without building the whole of it (:mod:`reprlib`: a few
    items a level, a few levels): a 1.5 KB YAML file of nested aliases is a list of 10^9 items once written out, and
    an error message that quoted it with repr() ran out of memory after a minute (the file-safety audit)."""
    import reprlib

    shortener = reprlib.Repr()
    shortener.maxlevel, shortener.maxstring, shortener.maxother = 4, limit, limit
    for name in ("maxlist", "maxtuple", "maxdict", "maxset", "maxfrozenset", "maxdeque", "maxarray"):
        setattr(shortener, name, 8)
    text = shortener.repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def shown_value(value: Any) -> str:
    """A value as an error message quotes it: text marked as text (``'false' (text)``), anything else as its repr
    (:func:`short_repr`: cut short, never built whole)."""
    if isinstance(value, str):
        return f"'{value}' (text)" if len(value) <= 200 else f"'{value[:200]}...' (text, {len(value)} characters)"
    return short_repr(value)


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


SETTING_SIZE_LIMITS = (("hu", None, None, "HU", "beyond any CT value"),
                       ("mm", -1000.0, 1000.0, "mm", "beyond any body (1 m)"),
                       ("deg", -360.0, 360.0, "degrees", "beyond a full turn"),
                       ("px", -1000.0, 1000.0, "pixels", "beyond any slice"),
                       ("count", 0.0, 100.0, "a count", "beyond any sensible number"),
                       ("voxels", 0.0, 1e9, "voxels", "beyond any CT"))
"""By a word of an option's name (``fill_hu``, ``rim_width_mm``, ``count_range``): the range of each number of a
nested training option (augmentation, synthetic lesions), its unit and why; ``None``: the preprocessing's
HU_SETTING_RANGE. Other numbers (factors, fractions; not probabilities, which are checked in
[0, 1]) are at most :data:`MAX_FACTOR` in size."""

MAX_FACTOR = 1000.0

SMALLEST_NONZERO = {"mm": (0.1, "below any CT pixel"), "a factor": (1e-6, "too small to be meant")}
"""By unit: the smallest size other than 0 a nested training setting may have, and why: ``elastic_grid_mm: 1e-308``
ended in 'OverflowError: cannot convert float infinity to integer' in the DataLoader, and ``zoom_range`` of 1e-300
made NaN patches."""


def setting_size_limit(name: str) -> Optional[Tuple[float, float, str, str]]:
    """``(low, high, unit, why)`` for the numbers of the nested training option ``name``
    (:data:`SETTING_SIZE_LIMITS`); None for a probability (checked in [0, 1] by its class)."""
    words = name.split("_")
    if "probability" in words:
        return None
    for word, low, high, unit, why in SETTING_SIZE_LIMITS:
        if word in words and not (word == "hu" and "scale" in words):  # hu_scale_range is a factor
            if low is None:
                from .preprocessing.config import HU_SETTING_RANGE

                low, high = HU_SETTING_RANGE
            return low, high, unit, why
    return -MAX_FACTOR, MAX_FACTOR, "a factor", "beyond any sensible factor"


def _check_setting_sizes(config: Any) -> None:
    """Refuse a number of ``config`` (an augmentation or synthetic-lesion setting) beyond its
    :func:`setting_size_limit`: a training recipe's ``fill_hu: 1e300``, ``noise_std_hu``, ``rim_width_mm``,
    ``irregularity_range`` or ``texture_noise_factor`` at 1e300 made every augmented patch NaN/inf in float32;
    ``heterogeneity_scale_mm`` at 1e300 failed in the DataLoader ('Maximum allowed size exceeded') and a
    ``count_range`` of a billion lesions hung the first sample, all found only once training ran on them. A size other
    than 0 under :data:`SMALLEST_NONZERO` likewise."""
    for f in fields(config):  # type: ignore[arg-type]
        value = getattr(config, f.name)
        values = value if isinstance(value, tuple) else (value,)
        limit = setting_size_limit(f.name)
        if limit is None or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
            continue
        low, high, unit, why = limit
        if not all(low <= float(v) <= high for v in values):
            default = f.default if f.default is not MISSING else None
            default = list(default) if isinstance(default, tuple) else default
            raise InputError(f"{type(config).__name__}.{f.name} = {value!r} is {why}: give {unit} from {low:g} to "
                             f"{high:g} (its default is {default!r}).")
        smallest, why = SMALLEST_NONZERO.get(unit, (0.0, ""))
        if any(0.0 < abs(float(v)) < smallest for v in values):
            default = f.default if f.default is not MISSING else None
            default = list(default) if isinstance(default, tuple) else default
            raise InputError(f"{type(config).__name__}.{f.name} = {value!r} is {why}: a size other than 0 must be at "
                             f"least {smallest:g}{' mm' if unit == 'mm' else ''} (its default is {default!r}).")


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
        _check_setting_sizes(self)
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
