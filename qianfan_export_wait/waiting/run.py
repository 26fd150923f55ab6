"""Moved: ``wait_for_exports`` lives in ``qianfan_export_wait.oneshot`` (import it from
``qianfan_export_wait``); this name still finds it, with a ``DeprecationWarning``."""

from __future__ import annotations

from typing import Any

__all__ = ["wait_for_exports"]  # noqa: F822 (found through __getattr__)


def __getattr__(name: str) -> Any:
    """``wait_for_exports``, from its new home, with a ``DeprecationWarning``."""
    if name == "wait_for_exports":
        import warnings

        from ..oneshot import wait_for_exports

        warnings.warn(
            f"{__name__}.wait_for_exports moved: import it from qianfan_export_wait",
            DeprecationWarning,
            stacklevel=2,
        )
        return wait_for_exports
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
