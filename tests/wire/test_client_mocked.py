"""``ExportStatusClient`` with HTTP mocked by aioresponses: the request as sent, and each
error as it arrives, with no server at all."""

from __future__ import annotations

import inspect
import json
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from multidict import CIMultiDict
from scripted_server import DEFAULT_URL, Received, ScriptedServer
from statuses import v1_body
from tenacity import wait_none

from qianfan_export_wait.auth import Credentials
from qianfan_export_wait.client import EXPORT_STATUS_PATH, ExportStatusClient
from qianfan_export_wait.errors import (
    ApiError,
    AuthError,
    ResponseFormatError,
    ThrottledError,
    TransientError,
)


class _SentRequestWriter:
    """What aiohttp >= 3.14 reads from the request writer of a response to a sent request."""

    output_size = 0


class _MockResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.x builds responses without the ``stream_writer`` argument aiohttp
    3.14 requires (pnuckowski/aioresponses#289); supply it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if _NEEDS_STREAM_WRITER:
            kwargs.setdefault("stream_writer", _SentRequestWriter())
        super().__init__(*args, **kwargs)


_NEEDS_STREAM_WRITER = "stream_writer" in inspect.signature(aiohttp.ClientResponse).parameters


def _mock_post(mocked: aioresponses, **response: Any) -> None:
    mocked.post(DEFAULT_URL, response_class=_MockResponse, **response)


def _aioresponses_client(credentials: Credentials, **options: Any) -> ExportStatusClient:
    settings: dict[str, Any] = {
        "base_url": "https://qianfan.baidubce.com",
        "retry_wait": wait_none(),
        "max_attempts": 1,
    }
    settings.update(options)
    return ExportStatusClient(credentials, **settings)


async def test_aioresponses_request_is_signed_for_default_host(credentials: Credentials) -> None:
    with aioresponses() as mocked:
        _mock_post(mocked, payload=v1_body(96, documented=True))
        async with _aioresponses_client(credentials) as client:
            await client.get_status(96)
        [calls] = mocked.requests.values()
    sent = calls[0].kwargs
    headers = CIMultiDict(sent["headers"])
    assert headers["Host"] == "qianfan.baidubce.com"
    received = Received("POST", EXPORT_STATUS_PATH, {}, headers, sent["data"])
    assert ScriptedServer(credentials).signature_problem(received) is None
    assert json.loads(sent["data"]) == {"exportID": 96}


@pytest.mark.parametrize(
    ("mock", "expected"),
    [
        pytest.param({"payload": {"error_code": 17}}, ThrottledError, id="code-17-http-200"),
        pytest.param({"payload": {"error_code": "336501"}}, ThrottledError, id="code-as-string"),
        pytest.param({"payload": {"error_code": 6}, "status": 400}, AuthError, id="code-6"),
        pytest.param({"payload": {"error_code": 2}}, TransientError, id="code-2"),
        pytest.param({"status": 429}, ThrottledError, id="http-429"),
        pytest.param({"status": 500}, TransientError, id="http-500"),
        pytest.param({"status": 401}, AuthError, id="http-401"),
        pytest.param({"status": 403}, AuthError, id="http-403"),
        pytest.param(
            {"status": 400, "headers": {"X-Bce-Error-Code": "SignatureDoesNotMatch"}},
            AuthError,
            id="x-bce-error-code",
        ),
        pytest.param({"exception": TimeoutError()}, TransientError, id="timeout"),
        pytest.param(
            {"exception": aiohttp.ServerDisconnectedError()}, TransientError, id="disconnected"
        ),
        pytest.param(
            {"exception": aiohttp.ClientPayloadError("cut")}, ResponseFormatError, id="payload"
        ),
        pytest.param({"body": b'{"result": {'}, ResponseFormatError, id="truncated-json"),
    ],
)
async def test_aioresponses_error_arrives_as_its_class(
    credentials: Credentials, mock: dict[str, Any], expected: type[ApiError]
) -> None:
    with aioresponses() as mocked:
        _mock_post(mocked, **mock)
        async with _aioresponses_client(credentials) as client:
            with pytest.raises(ApiError) as caught:
                await client.get_status(96)
    assert type(caught.value) is expected


async def test_aioresponses_transient_retries_stop_after_max_attempts(
    credentials: Credentials,
) -> None:
    with aioresponses() as mocked:
        _mock_post(mocked, status=503, repeat=True)
        async with _aioresponses_client(credentials, max_attempts=4) as client:
            with pytest.raises(TransientError):
                await client.get_status(96)
        [calls] = mocked.requests.values()
    assert len(calls) == 4
