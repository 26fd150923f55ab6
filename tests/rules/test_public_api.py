"""The package's public face: every name in ``__all__`` is importable from it, and each is
loaded only when first used."""

from __future__ import annotations

import subprocess
import sys

import qianfan_export_wait


def test_every_public_name_resolves() -> None:
    for name in qianfan_export_wait.__all__:
        assert getattr(qianfan_export_wait, name) is not None, name


def test_public_names_and_their_homes_agree() -> None:
    assert sorted(qianfan_export_wait.__all__) == sorted(qianfan_export_wait._HOMES)


def test_importing_the_package_loads_no_submodule_until_a_name_is_used() -> None:
    probe = (
        "import sys, qianfan_export_wait as q\n"
        "def loaded(): return ('qianfan_export_wait.waiting' in sys.modules,"
        " 'aiohttp' in sys.modules)\n"
        "before = loaded()\n"
        "q.ExportWaiter\n"
        "waiter = loaded()\n"  # the waiter needs no HTTP library (downloads are beside it)
        "q.ExportStatusClient\n"
        "print(*before, *waiter, *loaded())"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["False", "False", "True", "False", "True", "True"]
