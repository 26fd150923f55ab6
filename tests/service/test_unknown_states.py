"""No blind waits: a state outside the known ones is logged once per distinct state with
the export id, counted, read as running; ``unknown_state_timeout`` ends such an export as
``error``. Against a small aiohttp server on 127.0.0.1 answering V2 export statuses."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web
from fakes import FakeClock
from scripted_server import recording_server
from statuses import v2_answer, v2_result

from qianfan_export_wait import ExportStatusClient, ExportWaiter
from qianfan_export_wait.errors import UnknownStateError
from qianfan_export_wait.models import ExportState
from qianfan_export_wait.testing import fast_policy, generate_credentials


class States:
    """The state each V2 export task answers with."""

    def __init__(self) -> None:
        self.state: dict[str, str] = {}

    async def handle(self, request: web.Request) -> web.Response:
        assert request.query["Action"] == "DescribeEvalResultExportTask"
        task_id = (await request.json())["taskId"]
        result = v2_result(task_id, self.state[task_id], url=None)
        return web.Response(body=v2_answer(result), content_type="application/json")


@pytest_asyncio.fixture
async def server() -> AsyncIterator[tuple[States, str]]:
    states = States()
    async with recording_server(states.handle) as recorder:
        yield states, recorder.base_url


async def test_an_unknown_state_is_logged_once_per_state_counted_and_running(
    server: tuple[States, str], caplog: pytest.LogCaptureFixture
) -> None:
    states, base_url = server
    states.state.update({"amemt-a": "Archiving", "amemt-b": "Archiving", "amemt-c": "Held"})
    async with ExportStatusClient(generate_credentials(), base_url=base_url, api="v2") as client:
        with caplog.at_level(logging.WARNING, logger="qianfan_export_wait"):
            answers = [await client.get_status(task) for task in ("amemt-a", "amemt-b")]
            answers.append(await client.get_status("amemt-c"))
            answers.append(await client.get_status("amemt-a"))
    assert [answer.phase.value for answer in answers] == ["running"] * 4
    assert not any(answer.is_terminal for answer in answers)
    assert client.stats.unknown_states == {"Archiving": 3, "Held": 1}
    warnings = [r.getMessage() for r in caplog.records if "does not know" in r.getMessage()]
    assert len(warnings) == 2
    assert "'amemt-a'" in warnings[0] and "'Archiving'" in warnings[0]
    assert "'amemt-c'" in warnings[1] and "'Held'" in warnings[1]


async def test_unknown_state_timeout_ends_the_export_after_that_long(
    server: tuple[States, str],
) -> None:
    states, base_url = server
    states.state["amemt-a"] = "Archiving"
    clock = FakeClock()
    client = ExportStatusClient(
        generate_credentials(),
        base_url=base_url,
        api="v2",
        unknown_state_timeout=60.0,
        clock=clock,
    )
    async with client:
        await client.get_status("amemt-a")
        clock.advance(59.0)
        await client.get_status("amemt-a")
        states.state["amemt-a"] = "Running"  # a known state starts the time over
        assert (await client.get_status("amemt-a")).state is ExportState.UPLOADING
        states.state["amemt-a"] = "Archiving"
        clock.advance(30.0)
        await client.get_status("amemt-a")
        clock.advance(59.0)
        await client.get_status("amemt-a")
        clock.advance(1.0)
        with pytest.raises(UnknownStateError, match="unknown_state_timeout=60") as caught:
            await client.get_status("amemt-a")
    assert (caught.value.state, caught.value.export_id) == ("Archiving", "amemt-a")


async def test_the_waiter_ends_an_export_stuck_in_an_unknown_state_as_error(
    server: tuple[States, str],
) -> None:
    states, base_url = server
    states.state.update({"amemt-a": "Archiving", "amemt-b": "Succeeded", "amemt-c": "Failed"})
    client = ExportStatusClient(
        generate_credentials(), base_url=base_url, unknown_state_timeout=0.0
    )
    async with client, ExportWaiter(client, policy=fast_policy(), api="v2") as waiter:
        report = await waiter.wait_all(["amemt-a", "amemt-b", "amemt-c"])
    kinds = {o.export_id: o.kind.value for o in report.outcomes}
    assert kinds == {"amemt-a": "error", "amemt-b": "done", "amemt-c": "failed"}
    stuck = next(o for o in report.outcomes if o.export_id == "amemt-a")
    assert isinstance(stuck.error, UnknownStateError)
