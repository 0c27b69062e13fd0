"""Valid ranges of the analyses' numeric options, checked before anything is read or computed.

Each pipeline declares `OPTION_RANGES = {option: (low, high, low inclusive[, high inclusive])}` (the high bound is
inclusive unless a fourth value says otherwise) and calls `check_ranges`; the
command line (cli.run_module), the batch command and each pipeline's `run` (the Slicer panels' path) check them.
"""

from __future__ import annotations

import math

from .errors import InputError


def check_ranges(options, ranges: dict[str, tuple]) -> None:
    """One line naming the option when a number is out of its range (NaN included)."""
    for name, (low, high, low_inclusive, *rest) in ranges.items():
        value = getattr(options, name, None)
        if value is None:
            continue
        high_inclusive = rest[0] if rest else True
        above_low = value >= low if low_inclusive else value > low
        below_high = value <= high if high_inclusive else value < high
        if not (math.isfinite(value) and above_low and below_high):
            raise InputError(f"--{name.replace('_', '-')} {value:g} is out of range: give a value "
                             f"{'from' if low_inclusive else 'above'} {low:g} {'up to' if high_inclusive else 'below'} "
                             f"{high:g}.")


def module_defaults(add_arguments, **overrides):
    """An analysis's own options at their defaults (from its `add_arguments`, the one place they are declared),
    with `overrides`: what the science needs to re-run a step without going through the command line."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    options = parser.parse_args([])
    for key, value in overrides.items():
        if not hasattr(options, key):
            raise TypeError(f"unknown option: {key}")
        setattr(options, key, value)
    return options
