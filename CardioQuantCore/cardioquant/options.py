"""Valid ranges of the analyses' numeric options, checked before anything is read or computed.

Each pipeline declares `OPTION_RANGES = {option: (low, high, low inclusive)}` and calls `check_ranges`; the
command line (cli.run_module), the batch command and each pipeline's `run` (the Slicer panels' path) check them.
"""

from __future__ import annotations

import math

from .errors import InputError


def check_ranges(options, ranges: dict[str, tuple[float, float, bool]]) -> None:
    """One line naming the option when a number is out of its range (NaN included)."""
    for name, (low, high, inclusive) in ranges.items():
        value = getattr(options, name, None)
        if value is None:
            continue
        above_low = value >= low if inclusive else value > low
        if not (math.isfinite(value) and above_low and value <= high):
            bound = "from" if inclusive else "above"
            raise InputError(f"--{name.replace('_', '-')} {value:g} is out of range: give a value {bound} {low:g} "
                             f"up to {high:g}.")
