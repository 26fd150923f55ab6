"""The test pair the simulator accepts when given no credentials (not a secret)."""

from __future__ import annotations

from ..auth import Credentials

__all__ = ["SIMULATOR_CREDENTIALS"]

SIMULATOR_CREDENTIALS = Credentials("simulator-access-key", "simulator-secret-key")
"""The pair ``simulate`` accepts when given none (a test pair, not a secret)."""
