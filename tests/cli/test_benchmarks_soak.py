"""The soak benchmark's arithmetic and its few-second smoke run. Nothing about speed."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import __main__ as runner
from benchmarks.suite_soak import TRACKED, _flatness, slope_per_hour

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOKE = [sys.executable, "-m", "benchmarks", "--quick", "--only", "soak", "--no-plots"]


def test_slope_is_the_least_squares_line_per_hour() -> None:
    # 2 units per second on a line, with noise that cancels out.
    points = [(t, 2.0 * t + (1.0 if t % 20 else -1.0)) for t in range(0, 100, 10)]
    assert slope_per_hour(points) == pytest.approx(7200.0, rel=0.01)
    assert slope_per_hour([(t, 5.0) for t in range(10)]) == 0.0
    assert math.isnan(slope_per_hour([(1.0, 3.0)]))
    assert math.isnan(slope_per_hour([(1.0, 3.0), (1.0, 4.0)]))


def test_flatness_ignores_the_warm_up_and_flags_growth() -> None:
    samples = [
        {"t_s": float(t), **dict.fromkeys(TRACKED, 0.0), "rss_mb": 100.0, "tasks": 30.0}
        for t in range(0, 3600, 30)
    ]
    for sample in samples:
        if sample["t_s"] < 600:  # warm-up: RSS climbs fast, then holds
            sample["rss_mb"] = 50.0 + sample["t_s"] / 12
        sample["in_flight"] = sample["t_s"] / 300  # a leak: 12 an hour
    fits = _flatness(samples, warmup_s=600.0)
    assert fits["rss_mb"]["flat"] and fits["rss_mb"]["slope_per_hour"] == 0.0
    assert fits["tasks"]["flat"]
    assert not fits["in_flight"]["flat"]
    assert fits["in_flight"]["slope_per_hour"] == pytest.approx(12.0)


def test_the_soak_runs_only_when_named_or_as_a_smoke() -> None:
    assert "soak" in runner.ON_REQUEST
    full = runner._parse([])
    assert full.soak_minutes == 30.0
    with pytest.raises(SystemExit):
        runner._parse(["--soak-minutes", "0"])


def test_quick_soak_writes_samples_and_end_checks(tmp_path: Path) -> None:
    completed = subprocess.run(
        [*SMOKE, "--output", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    suite = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))["suites"]["soak"]
    assert suite["status"] == "ok", suite["notes"]
    samples = suite["series"]["soak"]
    assert len(samples) >= 5
    assert {"rss_mb", "open_fds", "tasks", "in_flight", "requests_per_s"} <= set(samples[-1])
    assert set(suite["metrics"]["slope_per_hour"]) == set(TRACKED)
    names = {target["name"] for target in suite["targets"]}
    assert "requests in flight once every caller left" in names
    assert sum(suite["metrics"]["outcomes"].values()) > 0
