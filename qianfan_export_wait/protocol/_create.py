"""Argument checks shared by both generations' create calls."""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import ConfigurationError
from ..models import describe_value


def choice(value: object, what: str, allowed: tuple[str, ...]) -> str:
    """``value`` spelled as in ``allowed`` (matched without regard to case), or
    ``ConfigurationError`` naming it and the choices."""
    if isinstance(value, str):
        for option in allowed:
            if value.casefold() == option.casefold():
                return option
    raise ConfigurationError(
        f"{what} {describe_value(value)} is not one of {', '.join(map(repr, allowed))}"
    )


def contents(value: object, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """``value`` as a non-empty tuple of distinct export contents from ``allowed``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigurationError(
            f"export content {describe_value(value)} is not a list; expected some of "
            f"{', '.join(map(repr, allowed))}"
        )
    chosen: list[str] = []
    for item in value:
        option = choice(item, "export content", allowed)
        if option in chosen:
            raise ConfigurationError(f"export content {option!r} is listed twice")
        chosen.append(option)
    if not chosen:
        raise ConfigurationError(
            f"export content is empty; expected some of {', '.join(map(repr, allowed))}"
        )
    return tuple(chosen)


def name(value: object, what: str) -> str:
    """``value`` as a bucket-like name: a non-empty printable string without spaces or
    ``/``, at most 255 characters; else ``ConfigurationError``."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > 255
        or not value.isprintable()
        or any(ch.isspace() or ch == "/" for ch in value)
    ):
        raise ConfigurationError(
            f"{what} {describe_value(value)} is not a bucket name (a non-empty string "
            "without spaces or '/')"
        )
    return value
