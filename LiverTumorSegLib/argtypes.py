"""argparse types for numeric options with a lower bound, shared by the benchmark and helper scripts: each refuses
text that is no number, NaN, infinity and values under the bound with one argparse line naming the rule (0 repeats
printed 'inf s', a negative shape ended in numpy's traceback)."""
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
