"""The package's public face: every name in ``__all__`` is importable from it, and each is
loaded only when first used."""

from __future__ import annotations

import subprocess
import sys

import pytest

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


@pytest.mark.parametrize("home", ["qianfan_export_wait.waiting", "qianfan_export_wait.waiting.run"])
def test_wait_for_exports_is_still_found_where_it_was_with_a_warning(home: str) -> None:
    import importlib

    import qianfan_export_wait
    from qianfan_export_wait import oneshot

    module = importlib.import_module(home)
    with pytest.warns(DeprecationWarning, match="import it from qianfan_export_wait"):
        found = module.wait_for_exports
    assert found is oneshot.wait_for_exports is qianfan_export_wait.wait_for_exports


def test_the_download_record_is_one_class_wherever_it_is_found() -> None:
    from qianfan_export_wait import DownloadRecord, download, downloads, models
    from qianfan_export_wait.downloads import records

    assert DownloadRecord is models.DownloadRecord is records.DownloadRecord
    assert DownloadRecord is downloads.DownloadRecord is download.DownloadRecord
