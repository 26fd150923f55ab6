"""Small words for people: counts with their nouns in English."""

from __future__ import annotations

__all__ = ["counted"]


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` with ``noun`` in the right number: ``1 export``, ``2 exports``."""
    return f"{count} {noun if count == 1 else (plural or noun + 's')}"
