"""The shape of the code, where it is a promise: the command line is a leaf (nothing in
the library, the demo or the benchmarks imports it), so using or measuring the library
never pulls in argument parsing."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINTS = {
    "qianfan_export_wait/cli.py",
    "qianfan_export_wait/__main__.py",
    "benchmarks/cpu_worker.py",  # runs the CLI as a measured process of its own
}


def imported_modules(path: Path) -> set[str]:
    """The absolute names of the modules ``path`` imports (relative ones resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base]) if base else ".".join(parts)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


SOURCES = sorted(
    str(path.relative_to(ROOT))
    for folder in ("qianfan_export_wait", "benchmarks")
    for path in (ROOT / folder).rglob("*.py")
)


@pytest.mark.parametrize("source", [s for s in SOURCES if s not in ENTRY_POINTS])
def test_nothing_but_the_entry_points_imports_the_command_line(source: str) -> None:
    assert "qianfan_export_wait.cli" not in imported_modules(ROOT / source)


MAX_MODULE_LINES = 500
OVER_THE_LIMIT_FOR_NOW: dict[str, str] = {}
"""Modules still over the limit, each being split on its own branch: none now (client.py,
errors.py and protocol/_common.py were split), so the limit holds for every module."""


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(
            s,
            marks=pytest.mark.xfail(reason=OVER_THE_LIMIT_FOR_NOW[s], strict=False)
            if s in OVER_THE_LIMIT_FOR_NOW
            else (),
        )
        for s in SOURCES
        if s.startswith("qianfan_export_wait/")
    ],
)
def test_every_module_is_under_500_lines(source: str) -> None:
    lines = len((ROOT / source).read_text("utf-8").splitlines())
    assert lines < MAX_MODULE_LINES, f"{source} has {lines} lines"


# -- the old names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "names"),
    [
        ("download", "downloads.fetch", ["Downloader"]),
        ("download", "downloads.files", ["_PartialFile", "verify_record_on_disk"]),
        ("download", "downloads.records", ["DownloadRecord", "DownloadProgress"]),
        ("download_rules", "downloads.rules", ["is_loopback_host", "source_for", "Expected"]),
        ("bos", "downloads.bos", ["object_url", "SIGNATURE_EXPIRATION_SECONDS"]),
        ("extract", "downloads.extract", ["safe_extract", "_DRIVE"]),
        ("redis_limit", "fleet.limiter", ["RedisRateLimiter", "_bounded"]),
        ("redis_limit", "fleet.setup", ["limiter_from_url", "fleet_limiter"]),
        ("redis_limit", "fleet.urls", ["REDIS_URL_ENV", "FleetAuthError", "mask_url", "_scrub"]),
        ("redis_limit", "fleet.model", ["AdaptiveParams", "fleet_key"]),
        ("_fleet", "fleet.model", ["FLEET_SCRIPT", "FleetModel", "_SECOND"]),
        ("cli", "console.arguments", ["OPTION_GROUPS", "_count", "_Parser"]),
        ("cli", "console.verbs", ["Job", "_prepare_wait", "_session"]),
    ],
)
def test_old_module_names_keep_naming_the_same_objects(
    old: str, new: str, names: list[str]
) -> None:
    old_module = importlib.import_module(f"qianfan_export_wait.{old}")
    new_module = importlib.import_module(f"qianfan_export_wait.{new}")
    for name in names:
        assert getattr(old_module, name) is getattr(new_module, name), name
