"""argparse types for numeric options. :func:`number`: every number option of the ``livertumorseg`` commands, whose
parse error says how to write the value (a decimal point, digits alone), where argparse said only
``invalid float value: '1,5'``. :func:`bounded_number`, for the benchmark and helper scripts: also refuses NaN,
infinity and values under a bound with one argparse line naming the rule (0 repeats printed 'inf s', a negative
shape ended in numpy's traceback). :func:`probability`: a number from 0 to 1 (the scripts' lesion confidence
threshold)."""
import argparse
import math
from typing import Callable, List, Union

Number = Union[int, float]


def bounded_number(kind: Callable[[str], Number] = int, low: Number = 1, exclusive: bool = False, unit: str = "",
                   at_least: bool = False, note: str = "") -> Callable[[str], Number]:
    """An argparse ``type``: ``kind(text)`` (int or float) that is ``>= low`` (``> low`` with ``exclusive``).
    Messages: 'must be a whole number[ of UNIT], got 'x'', 'must be LOW or more[ UNIT][ NOTE], got V' ('must be at
    least LOW' with ``at_least``; 'must be above LOW' with ``exclusive``)."""
    suffix = f" {unit}" if unit else ""

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            what = "whole number" if kind is int else "number"
            raise argparse.ArgumentTypeError(f"must be a {what}{' of ' + unit if unit else ''}, got '{text}'") from None
        if isinstance(value, float) and not math.isfinite(value) or not (value > low if exclusive else value >= low):
            bound = (f"above {low:g}" if exclusive else f"at least {low:g}" if at_least else f"{low:g} or more")
            raise argparse.ArgumentTypeError(f"must be {bound}{suffix}{note}, got {text}")
        return value
    return parse


def number(kind: Callable[[str], Number] = float, unit: str = "") -> Callable[[str], Number]:
    """An argparse ``type`` for a command's number option: ``kind(text)`` (int or float), with a message that says
    what to type where argparse's said only ``invalid float value: '1,5'`` (a decimal comma, an empty value, a
    hexadecimal or a decimal where a whole number goes). Range checks (NaN, infinity, bounds) stay with the
    command, which names the rule; :func:`bounded_number` checks both."""
    of_unit = f" (in {unit})" if unit else ""

    def parse(text: str) -> Number:
        # Python's int() and float() also take '4_000' and other scripts' digits ('\u0664'): a mistyped 1_0 ran as 10
        plain = "_" not in text and text.isascii()
        try:
            if plain:
                return kind(text)
        except ValueError:
            pass
        what = "a whole number" if kind is int else "a number"
        shown = text if len(text) <= 40 else text[:37] + "..."
        if not text.strip():
            raise argparse.ArgumentTypeError(f"must be {what}{of_unit}, got an empty value; give one, e.g. "
                                             f"{_example(kind)}") from None
        if "," in text and plain and kind is int and _reads_as_float(text.replace(",", "")):
            raise argparse.ArgumentTypeError(f"must be {what}{of_unit}, got '{shown}': write it in digits alone, "
                                             f"without ',', e.g. {_example(kind)}") from None
        if "," in text and plain and kind is not int and _reads_as_float(text.replace(",", ".")):
            raise argparse.ArgumentTypeError(f"must be {what}{of_unit}, got '{shown}': write decimals with a point, "
                                             f"e.g. {text.strip().replace(',', '.')}") from None
        if kind is int and plain and _reads_as_float(text) and math.isfinite(float(text)):
            raise argparse.ArgumentTypeError(f"must be {what}{of_unit}, got '{shown}': give it without a fraction or "
                                             f"exponent, e.g. {_example(kind)}") from None
        raise argparse.ArgumentTypeError(f"must be {what}{of_unit} written in decimal digits, got '{shown}', e.g. "
                                         f"{_example(kind)}") from None
    return parse


def probability(text: str) -> float:
    """An argparse ``type``: a probability, a float from 0 to 1 inclusive (NaN refused), with :func:`number`'s
    message for text that is no number (the scripts' ``--min-lesion-probability`` each had its own range check)."""
    value = number(float)(text)
    if not 0 <= value <= 1:  # NaN too
        raise argparse.ArgumentTypeError(f"must be a probability, from 0 to 1, got {text}")
    return value


def _example(kind: Callable[[str], Number]) -> str:
    return "4" if kind is int else "2.5"


def _reads_as_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def seed_list(text: str, example: str = "0,1,2") -> List[int]:
    """``--seeds``: whole numbers separated by commas, each once in the order given; InputError (one line) for a
    word or for none (a word was a ValueError traceback)."""
    from .errors import InputError

    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"--seeds '{text}': expected whole numbers separated by commas, such as {example}.") from None
    if not seeds:
        raise InputError(f"--seeds names none; give whole numbers separated by commas, such as {example}.")
    return list(dict.fromkeys(seeds))
