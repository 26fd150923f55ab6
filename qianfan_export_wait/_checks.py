"""The one place options are checked: numbers with a unit and a range. Pure code.

The library, the command line (through ``argparse`` types that wrap these) and the
simulator all check their numbers here, so a bad value gets the same message everywhere.
"""

from __future__ import annotations

import math

from .errors import ConfigurationError

__all__ = ["check_count", "check_number"]


def check_number(
    name: str,
    value: object,
    *,
    unit: str = "seconds",
    minimum: float = 0.0,
    inclusive: bool = False,
    maximum: float = math.inf,
    allow_none: bool = False,
) -> float | None:
    """Return ``value`` as a float if it is a finite number of ``unit`` above ``minimum``
    (or at it, when ``inclusive``) and at most ``maximum``; else raise
    ``ConfigurationError`` naming ``name``, the value and what was expected."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number of {unit}, got {value!r}")
    number = float(value)
    low_ok = number >= minimum if inclusive else number > minimum
    if not (low_ok and number <= maximum and math.isfinite(number)):
        bound = f"{'>=' if inclusive else '>'} {minimum:g}"
        if maximum != math.inf:
            bound += f" and <= {maximum:g}"
        raise ConfigurationError(f"{name} must be a finite number of {unit} {bound}, got {value!r}")
    return number


def check_count(
    name: str, value: object, *, minimum: int | None = 1, maximum: int | None = None
) -> int:
    """Return ``value`` if it is an ``int`` (not a ``bool``) from ``minimum`` to
    ``maximum`` (``None``: no bound on that side), else raise ``ConfigurationError``
    naming it."""
    if minimum is None:
        bound = "" if maximum is None else f" <= {maximum}"
    else:
        bound = f" >= {minimum}" if maximum is None else f" from {minimum} to {maximum}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{name} must be an int{bound}, got {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ConfigurationError(f"{name} must be an int{bound}, got {value!r}")
    return value
