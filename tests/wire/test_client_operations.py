"""The client as a thin driver: any protocol operation of either generation sent through
one ``call``, over real HTTP to the simulator; transport failures of a create mapped so
that nothing is ever created twice; no import cycle between the client and downloads."""

from __future__ import annotations

import ast
import asyncio
import socket
from pathlib import Path

import pytest

import qianfan_export_wait
from qianfan_export_wait import protocol
from qianfan_export_wait.errors import (
    ConfigurationError,
    CreateUncertainError,
    TransientError,
)
from qianfan_export_wait.models import ExportState, Phase
from qianfan_export_wait.protocol import V1CreateExportArgs, V2CreateExportArgs
from qianfan_export_wait.testing import generate_credentials, simulated_qianfan

PACKAGE = Path(qianfan_export_wait.__file__).parent


async def test_every_operation_of_both_generations_goes_through_call() -> None:
    async with simulated_qianfan(seed=3, created_export_seconds=0.0) as sim:
        evaluation = sim.simulator.add_evaluation(finish_after=0.0)
        async with sim.client() as client:
            v1_eval = await client.call(protocol.eval_status("v1"), evaluation.evaluation_id)
            v2_eval = await client.call(protocol.eval_status("v2"), evaluation.evaluation_id_str)
            assert (v1_eval.phase, v2_eval.phase) == (Phase.DONE, Phase.DONE)
            assert (v1_eval.state, v2_eval.state) == ("Done", "Successed")
            v1_made = await client.call(
                protocol.create_export("v1"), V1CreateExportArgs(evaluation.evaluation_id)
            )
            v2_made = await client.call(
                protocol.create_export("v2"), V2CreateExportArgs(evaluation.evaluation_id_str)
            )
            v1_status = await client.get_status(v1_made.export_id)
            v2_status = await client.status_fetch("v2")(v2_made.export_id)
        async with sim.client(api="v2") as v2_client:
            again = await v2_client.get_status(v2_made.export_id)
    assert sim.simulator.creates_by_evaluation() == {evaluation.evaluation_id: 2}
    assert v1_status.api == "v1" and v2_status.api == "v2" and again.api == "v2"
    assert v2_status.export_id_str == v2_made.export_id == again.export_id_str
    assert {v1_status.state, v2_status.state} <= {
        ExportState.PENDING,
        ExportState.UPLOADING,
        ExportState.DONE,
    }


async def test_a_v2_client_refuses_a_v1_numeric_id_before_sending() -> None:
    async with simulated_qianfan() as sim, sim.client(api="v2") as client:
        with pytest.raises(ConfigurationError, match="V2 takes the string id"):
            client.get_status(96)  # type: ignore[unused-coroutine]
        assert client.stats.requests == 0


def test_an_unknown_api_is_refused_by_name() -> None:
    with pytest.raises(ConfigurationError, match="'v3'"):
        qianfan_export_wait.ExportStatusClient(generate_credentials(), api="v3")


async def _reset_server() -> tuple[asyncio.Server, int]:
    """A 127.0.0.1 server that reads a request and drops the connection unanswered."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_a_create_cut_off_mid_request_may_exist_and_is_sent_once() -> None:
    server, port = await _reset_server()
    async with server:
        client = qianfan_export_wait.ExportStatusClient(
            generate_credentials(), base_url=f"http://127.0.0.1:{port}", max_attempts=5
        )
        async with client:
            with pytest.raises(CreateUncertainError, match="may exist") as caught:
                await client.call(protocol.create_export("v2"), V2CreateExportArgs("ame-1"))
            # a status call is idempotent: the same failure is transient, and retried
            with pytest.raises(TransientError) as status_error:
                await client.call(protocol.export_status("v1"), 7, attempts=2)
    assert caught.value.operation == "v2.create_export"
    assert not isinstance(status_error.value, CreateUncertainError)
    assert client.stats.requests == 1 + 2


async def test_a_create_to_a_refused_connection_surely_was_not_sent() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = qianfan_export_wait.ExportStatusClient(
        generate_credentials(), base_url=f"http://127.0.0.1:{port}"
    )
    async with client:
        with pytest.raises(TransientError) as caught:
            await client.call(protocol.create_export("v1"), V1CreateExportArgs(5))
    assert not isinstance(caught.value, CreateUncertainError)


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


@pytest.mark.parametrize("module", ["download.py", "download_rules.py", "endpoints.py"])
def test_downloads_and_url_rules_do_not_import_the_client(module: str) -> None:
    assert ".client" not in _imported_modules(PACKAGE / module)


@pytest.mark.parametrize("module", ["testing.py", "simulator/app.py"])
def test_protocol_constants_do_not_come_from_the_client(module: str) -> None:
    source = (PACKAGE / module).read_text(encoding="utf-8")
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("client"):
            assert [alias.name for alias in node.names] == ["ExportStatusClient"], module
