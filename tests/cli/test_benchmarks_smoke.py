"""The benchmark runner works end to end on its cheapest suite. Nothing about speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_quick_client_suite_writes_results_json_of_the_documented_shape(tmp_path: Path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--only",
            "client",
            "--no-plots",
            "--output",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    document = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    assert document["quick"] is True
    assert set(document["machine"]) >= {"nproc", "python"}
    assert list(document["suites"]) == ["client"]
    suite = document["suites"]["client"]
    assert suite["status"] == "ok"
    assert {"metrics", "targets", "notes", "series", "seconds"} <= set(suite)
    # The default install's figure, and the fast extra's when orjson is installed.
    assert 1 <= len(suite["targets"]) <= 2
    for target in suite["targets"]:
        assert set(target) == {"name", "value", "limit", "unit", "op", "holds"}
        assert isinstance(target["holds"], bool)
    assert suite["metrics"]["stdlib_json"]["library_cpu_us_per_call"] > 0
    assert "| client |" in completed.stdout
