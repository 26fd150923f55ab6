"""The import contract of ``qianfan_export_wait.protocol``: pure code, importing neither
asyncio nor aiohttp, nor the client, the waiter or downloads."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import qianfan_export_wait.protocol as protocol_package

PACKAGE = Path(protocol_package.__file__).parent
FORBIDDEN_TOP = {"asyncio", "aiohttp", "yarl", "tenacity", "socket", "time"}
FORBIDDEN_OWN = {"client", "waiter", "waiting", "download", "downloads", "console", "cli", "bos"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            prefix = "." * node.level + (node.module or "")
            names.add(prefix)
    return names


def test_protocol_modules_import_no_io_or_upper_layer() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) >= 8
    for module in modules:
        for name in _imports(module):
            top = name.lstrip(".").split(".")[0]
            if name.startswith(".."):
                assert top not in FORBIDDEN_OWN, f"{module.name} imports {name}"
            elif not name.startswith("."):
                assert top not in FORBIDDEN_TOP, f"{module.name} imports {name}"


def test_importing_protocol_loads_neither_asyncio_nor_aiohttp() -> None:
    code = (
        "import sys\n"
        "import qianfan_export_wait.protocol\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('asyncio', 'aiohttp')"
        " or m.startswith(('qianfan_export_wait.client', 'qianfan_export_wait.waiting',"
        " 'qianfan_export_wait.download')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert out == "", f"importing the protocol loaded: {out}"
