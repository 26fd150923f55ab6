"""Fixtures shared by the foundation tests. Kept small: anything specific lives in its test file."""

from __future__ import annotations

import pytest

from qianfan_export_wait.auth import Credentials

TEST_ACCESS_KEY = "AKIDTESTACCESSKEY0000000000000000"
TEST_SECRET_KEY = "SKTESTSECRETdo-not-leak-7f3a9c1e"


@pytest.fixture
def credentials() -> Credentials:
    """A fixed AK/SK pair; its secret key is distinctive so leak checks can grep for it."""
    return Credentials(TEST_ACCESS_KEY, TEST_SECRET_KEY)
