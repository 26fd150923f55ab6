"""Prometheus metrics against the simulator's own counts (127.0.0.1), the names' rules,
and ``wait --metrics-port`` served while the command runs."""

from __future__ import annotations

import asyncio
import re
import socket
import sys
from typing import Any

import aiohttp
import pytest
from hardening_support import ACCESS_KEY, CLI, SECRET_KEY, cli_env
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from qianfan_export_wait import Credentials, ExportWaiter
from qianfan_export_wait.metrics import PrometheusObserver, serve_metrics
from qianfan_export_wait.testing import fast_policy, simulated_qianfan

FAST = fast_policy()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    got = registry.get_sample_value(name, labels)
    assert got is not None, (name, labels)
    return got


async def test_request_counts_agree_with_the_simulators_own() -> None:
    registry = CollectorRegistry()
    async with simulated_qianfan(
        exports=300, max_seconds=1.5, fail_ratio=0.1, qps=150, seed=4
    ) as fake:
        async with fake.client() as client:
            waiter = ExportWaiter(
                client,
                policy=FAST,
                max_in_flight=32,
                qps=400,  # above the simulator's limit: it throttles
                observers=[PrometheusObserver(registry)],
            )
            async with waiter:
                report = await waiter.wait_all(range(1, 301))
        sim = fake.stats.requests_by_outcome
        total = fake.stats.total_requests
    ok = value(registry, "qianfan_export_wait_requests_total", outcome="ok")
    throttled = value(registry, "qianfan_export_wait_requests_total", outcome="throttled")
    counted = sum(
        value(registry, "qianfan_export_wait_requests_total", outcome=kind)
        for kind in ("ok", "throttled", "transient", "auth", "invalid", "unexpected")
    )
    assert sim["throttled"] > 0  # the run did meet the limit
    assert (ok, throttled, counted) == (sim["ok"], sim["throttled"], total)
    assert value(registry, "qianfan_export_wait_request_duration_seconds_count") == total
    assert value(registry, "qianfan_export_wait_outcomes_total", kind="done") == len(report.done)
    assert value(registry, "qianfan_export_wait_outcomes_total", kind="failed") == len(
        report.failed
    )
    assert value(registry, "qianfan_export_wait_wait_duration_seconds_count", kind="done") == len(
        report.done
    )
    # The waiter is closed: its gauges are no longer summed.
    assert value(registry, "qianfan_export_wait_pending_exports") == 0


async def test_gauges_show_what_waits_now_and_the_estimated_limit() -> None:
    registry = CollectorRegistry()
    async with simulated_qianfan(exports=3, max_seconds=0.1, seed=5) as fake:
        held = fake.add_export(None, uploading_after=0.0)
        async with fake.client() as client:
            waiter = ExportWaiter(client, policy=FAST, observers=[PrometheusObserver(registry)])
            async with waiter:
                task = asyncio.ensure_future(waiter.wait_all([1, 2, 3, held.export_id]))
                for _ in range(500):  # until the held export has been polled a few times
                    if value(registry, "qianfan_export_wait_requests_total", outcome="ok") >= 5:
                        break
                    await asyncio.sleep(0.02)
                assert value(registry, "qianfan_export_wait_pending_exports") >= 1
                assert value(registry, "qianfan_export_wait_callers") == 1
                assert value(registry, "qianfan_export_wait_outage") == 0
                assert value(registry, "qianfan_export_wait_rate_limit_requests_per_second") > 0
                fake.complete(held.export_id)
                report = await task
    assert report.ok


def test_every_name_follows_prometheus_rules_and_no_label_can_hold_an_id() -> None:
    registry = CollectorRegistry()
    PrometheusObserver(registry)
    names = set()
    for family in registry.collect():
        assert family.name.startswith("qianfan_export_wait_")
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", family.name)
        if family.type == "counter":
            assert not family.name.endswith("_total")  # the client adds it to samples
        names.add(family.name)
        for sample in family.samples:
            assert set(sample.labels) <= {"outcome", "kind", "result", "le"}
    assert {"qianfan_export_wait_requests", "qianfan_export_wait_pending_exports"} <= names
    # A second observer on the same registry shares the metrics (no duplicate error).
    PrometheusObserver(registry)


async def test_serve_metrics_serves_the_registry_over_http() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    observer._metrics.by_request[next(iter(observer._metrics.by_request))].inc(3)
    async with serve_metrics(0, registry=registry) as port:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert response.status == 200
                text = await response.text()
    assert samples(text)[("qianfan_export_wait_requests_total", (("outcome", "ok"),))] == 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def scrape(port: int) -> str | None:
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                return await response.text()
    except aiohttp.ClientError:
        return None


async def test_wait_metrics_port_serves_figures_that_agree_with_the_simulator() -> None:
    credentials = Credentials(ACCESS_KEY, SECRET_KEY)
    async with simulated_qianfan(credentials=credentials) as fake:
        for _ in range(3):
            fake.add_export(0.0)
        held = fake.add_export(None, uploading_after=0.0)
        port = free_port()
        process = await asyncio.create_subprocess_exec(
            *CLI, "wait", "1", "2", "3", str(held.export_id), "--endpoint", fake.base_url,
            "--min-delay", "0.05", "--max-delay", "0.1", "--metrics-port", str(port),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=cli_env(),
        )  # fmt: skip
        try:
            found = None
            for _ in range(400):
                text = await scrape(port)
                if text is not None:
                    got = samples(text)
                    if (
                        got.get(("qianfan_export_wait_requests_total", (("outcome", "ok"),)), 0)
                        >= 8
                    ):
                        before = fake.stats.total_requests
                        text = await scrape(port)
                        after = fake.stats.total_requests
                        assert text is not None
                        found = samples(text)
                        break
                await asyncio.sleep(0.05)
            assert found is not None, "no metrics were served"
            counted = sum(
                v for (name, _), v in found.items() if name == "qianfan_export_wait_requests_total"
            )
            # At most one request (the held export's) is answered and not yet counted.
            assert before - 1 <= counted <= after
            assert found[("qianfan_export_wait_pending_exports", ())] == 1
            assert found[("qianfan_export_wait_outcomes_total", (("kind", "done"),))] == 3
            assert found[("qianfan_export_wait_outage", ())] == 0
            fake.complete(held.export_id)
            _, stderr = await asyncio.wait_for(process.communicate(), 30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 0, stderr
    assert f"metrics at http://127.0.0.1:{port}/metrics" in stderr.decode()


async def test_metrics_port_without_prometheus_client_is_bad_usage() -> None:
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "from qianfan_export_wait.cli import main\n"
        "sys.exit(main(['wait', '1', '--metrics-port', '9999']))\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=cli_env(),
    )  # fmt: skip
    _, stderr = await process.communicate()
    assert process.returncode == 64
    assert b"--metrics-port 9999 needs prometheus_client" in stderr


@pytest.mark.parametrize("bad", ["0", "70000", "http"])
def test_metrics_port_must_be_a_port(bad: str) -> None:
    from qianfan_export_wait.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["wait", "1", "--metrics-port", bad])


def test_the_docs_table_lists_exactly_the_metrics_there_are() -> None:
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text("utf-8")
    documented = set(re.findall(r"^\| `(qianfan_export_wait_\w+)` \|", docs, re.M))
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    waiter = _WithCeiling()
    observer._metrics.gauges.waiters.add(waiter)  # type: ignore[arg-type]  # the optional gauge
    exposed = set()
    for family in registry.collect():
        suffix = "_total" if family.type == "counter" else ""
        exposed.add(family.name + suffix)
    assert documented == exposed


class _WithCeiling:
    """Just enough of a waiter for the gauges, with an estimated limit."""

    closed = False

    class limiter:
        ceiling = 10.0

    class stats:
        pending = callers = in_flight = downloading = 0
        rate = request_rate = 0.0
        unavailable_for = None


def test_a_scrape_that_meets_the_loop_changing_a_table_still_answers() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)

    class Racing(_WithCeiling):
        tries = 0

        @property
        def stats(self) -> Any:  # type: ignore[override]
            Racing.tries += 1
            if Racing.tries == 1:
                raise RuntimeError("deque mutated during iteration")
            return _WithCeiling.stats

    waiter = Racing()
    observer._metrics.gauges.waiters.add(waiter)  # type: ignore[arg-type]
    assert registry.get_sample_value("qianfan_export_wait_pending_exports") == 0
    assert Racing.tries == 2
