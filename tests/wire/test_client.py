"""``ExportStatusClient`` against the scripted server (tests/support/scripted_server.py): what it
sends, how each error arrives, retries, the server's clock, validation and its session.
The same through aioresponses is in test_client_mocked.py; secrets in
test_hardening_secrets.py."""

from __future__ import annotations

import email.utils
import gzip
import json
import socket
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from scripted_server import (
    MIB,
    MakeClient,
    Responder,
    ScriptedServer,
    answer,
    bce_error,
    cut_off_body,
    reset_connection,
)
from statuses import v1_body

from qianfan_export_wait import client as client_module
from qianfan_export_wait.auth import Credentials
from qianfan_export_wait.client import (
    EXPORT_STATUS_PATH,
    MAX_RESPONSE_BYTES,
    ExportStatusClient,
)
from qianfan_export_wait.errors import (
    ApiError,
    AuthError,
    ConfigurationError,
    InvalidRequestError,
    ResponseFormatError,
    ThrottledError,
    TransientError,
    UnexpectedAnswerError,
)

# --- what goes on the wire ----------------------------------------------------------------


async def test_authorization_sent_is_valid_for_the_request_as_received(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    await make_client().get_status(96)
    assert len(server.requests) == 1
    assert server.signature_problem(server.requests[0]) is None


async def test_signed_host_header_includes_the_port(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    await make_client().get_status(96)
    assert server.requests[0].headers["Host"] == f"127.0.0.1:{server.port}"


async def test_request_is_a_json_post_to_the_export_status_path(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    await make_client().get_status(96)
    received = server.requests[0]
    assert (received.method, received.path, received.query) == ("POST", EXPORT_STATUS_PATH, {})
    assert received.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("export_id", [96, 2**63 - 1, "amemt-hkkf5y9e64j8", "96", "导出-1"])
async def test_body_carries_export_id_with_its_own_json_type(
    server: ScriptedServer, make_client: MakeClient, export_id: int | str
) -> None:
    await make_client().get_status(export_id)
    sent = json.loads(server.requests[0].body.decode("utf-8"))
    assert sent == {"exportID": export_id}
    assert type(sent["exportID"]) is type(export_id)


async def test_success_returns_the_parsed_status(make_client: MakeClient) -> None:
    status = await make_client().get_status("amemt-hkkf5y9e64j8")
    assert status.export_id_str == "amemt-hkkf5y9e64j8"
    assert status.state_name == "Done"
    assert status.log_id == "2340692759"


async def test_connection_is_reused_between_requests(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    client = make_client()
    seen: set[object] = set()

    async def remember_peer(request: web.Request) -> web.StreamResponse:
        seen.add(request.transport)
        return web.json_response(v1_body(96, documented=True))

    server.then(remember_peer, remember_peer, remember_peer)
    for _ in range(3):
        await client.get_status(96)
    assert len(seen) == 1


# --- errors, each way it can arrive -------------------------------------------------------
ERROR_CASES: list[Any] = [
    pytest.param(
        answer({"error_code": 18, "error_msg": "qps"}), ThrottledError, id="code-18-http-200"
    ),
    pytest.param(answer({"error_code": "18"}), ThrottledError, id="code-18-as-string"),
    pytest.param(
        answer({"error_code": 500001, "error_msg": "param invalid"}),
        InvalidRequestError,
        id="code-500001-http-200",
    ),
    pytest.param(answer({"error_code": "336003"}), InvalidRequestError, id="code-336003-as-string"),
    pytest.param(answer({"error_code": 110}), AuthError, id="code-110-http-200"),
    pytest.param(answer({"error_code": 336100}), TransientError, id="code-336100-http-200"),
    pytest.param(answer(status=429), ThrottledError, id="http-429"),
    pytest.param(answer(b"<html>oops</html>", status=500), TransientError, id="http-500-html"),
    pytest.param(answer(status=502), TransientError, id="http-502"),
    pytest.param(answer(status=503), TransientError, id="http-503"),
    pytest.param(answer(status=401), AuthError, id="http-401"),
    pytest.param(answer(status=403), AuthError, id="http-403"),
    pytest.param(answer(status=404), ApiError, id="http-404"),
    pytest.param(
        answer(status=400, headers={"X-Bce-Error-Code": "SignatureDoesNotMatch"}),
        AuthError,
        id="x-bce-error-code-signature",
    ),
    pytest.param(
        answer(status=400, headers={"X-Bce-Error-Code": "RequestExpired"}),
        AuthError,
        id="x-bce-error-code-expired-without-date",
    ),
    pytest.param(reset_connection, TransientError, id="connection-reset"),
    pytest.param(cut_off_body, ResponseFormatError, id="body-cut-off"),
    pytest.param(
        answer(b'{"log_id": "1", "result": {"exportID": 9'),
        ResponseFormatError,
        id="truncated-json",
    ),
    pytest.param(answer(b""), ResponseFormatError, id="empty-body"),
    pytest.param(answer(b"\xff\xfe not json"), ResponseFormatError, id="not-utf8"),
    pytest.param(answer([1, 2]), ResponseFormatError, id="json-array"),
    pytest.param(
        answer({"result": {"exportID": "96", "state": "Done"}}),
        ResponseFormatError,
        id="export-id-as-string",
    ),
    pytest.param(
        answer({"result": {"exportID": 96, "state": 3}}), ResponseFormatError, id="state-as-int"
    ),
    pytest.param(
        answer(v1_body(97, documented=True)), UnexpectedAnswerError, id="answer-for-another-export"
    ),
]


@pytest.mark.parametrize(("responder", "expected"), ERROR_CASES)
async def test_error_arrives_as_its_class(
    server: ScriptedServer, make_client: MakeClient, responder: Responder, expected: type[ApiError]
) -> None:
    server.then(responder)
    with pytest.raises(ApiError) as caught:
        await make_client().get_status(96)
    assert type(caught.value) is expected
    assert len(server.requests) == 1


async def test_error_code_keeps_log_id_and_http_status(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.then(answer({"error_code": 500001, "error_msg": "bad", "log_id": 77}, status=400))
    with pytest.raises(InvalidRequestError) as caught:
        await make_client().get_status(96)
    assert (caught.value.code, caught.value.log_id, caught.value.http_status) == (500001, "77", 400)


async def test_retry_after_header_is_carried_on_throttled_error(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.then(answer(status=429, headers={"Retry-After": "3"}))
    with pytest.raises(ThrottledError) as caught:
        await make_client().get_status(96)
    assert caught.value.retry_after == 3.0


async def test_server_slower_than_request_timeout_is_transient(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    async def sleep_past_timeout(request: web.Request) -> web.StreamResponse:
        await server.hang()
        return web.json_response(v1_body(documented=True))

    server.then(sleep_past_timeout)
    started = time.monotonic()
    with pytest.raises(TransientError, match="timeout") as caught:
        await make_client(request_timeout=0.2).get_status(96)
    assert type(caught.value) is TransientError
    assert time.monotonic() - started < 2


def _unused_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_refused_connection_is_transient(credentials: Credentials) -> None:
    base_url = f"http://127.0.0.1:{_unused_port()}"
    async with ExportStatusClient(credentials, base_url=base_url, max_attempts=1) as client:
        with pytest.raises(TransientError, match="connection failed"):
            await client.get_status(96)


# --- oversized bodies ---------------------------------------------------------------------


async def test_oversized_body_with_content_length_is_refused_unread(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    async def announce_two_mib_then_stall(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 2 * MIB
        await response.prepare(request)
        await response.write(b'{"log_id": "' + b"x" * 1000)
        await server.hang()
        return response

    server.then(announce_two_mib_then_stall)
    with pytest.raises(ResponseFormatError, match="refused") as caught:
        await make_client(request_timeout=5.0).get_status(96)
    assert str(2 * MIB) in str(caught.value)


async def test_oversized_chunked_body_is_refused_without_reading_it_all(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    async def stream_past_the_limit_then_stall(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        sent = 0
        while sent <= MAX_RESPONSE_BYTES + 256 * 1024:
            await response.write(b"x" * 65536)
            sent += 65536
        await server.hang()
        return response

    server.then(stream_past_the_limit_then_stall)
    with pytest.raises(ResponseFormatError, match="refused"):
        await make_client(request_timeout=5.0).get_status(96)


async def test_complete_two_mib_body_is_refused(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.then(answer(b"[" + b"0," * MIB + b"0]"))
    with pytest.raises(ResponseFormatError, match="refused"):
        await make_client().get_status(96)


async def test_gzip_body_expanding_past_the_limit_is_refused(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    padded = v1_body(96, documented=True)
    padded["result"]["padding"] = "x" * (2 * MIB)
    compressed = gzip.compress(json.dumps(padded).encode("utf-8"))
    assert len(compressed) < MAX_RESPONSE_BYTES // 10
    server.then(
        answer(compressed, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    )
    with pytest.raises(ResponseFormatError, match="refused"):
        await make_client().get_status(96)


async def test_body_that_stalls_mid_way_times_out_as_transient(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    async def send_part_then_stall(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 200
        await response.prepare(request)
        await response.write(b'{"log_id": "1", ')
        await server.hang()
        return response

    server.then(send_part_then_stall)
    started = time.monotonic()
    with pytest.raises(TransientError, match="timeout"):
        await make_client(request_timeout=0.3).get_status(96)
    assert time.monotonic() - started < 2


# --- retries ------------------------------------------------------------------------------


async def test_transient_errors_stop_after_max_attempts(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.then(*[answer(status=503)] * 5)
    with pytest.raises(TransientError):
        await make_client(max_attempts=3).get_status(96)
    assert len(server.requests) == 3


async def test_transient_error_then_success_is_retried_to_success(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.then(answer(status=502), reset_connection)
    client = make_client(max_attempts=3)
    status = await client.get_status(96)
    assert status.export_id == 96
    assert len(server.requests) == 3
    assert client.stats.retries == 2


async def test_stats_count_requests_retries_and_outcomes(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.then(answer(status=503), answer(status=503), answer({"error_code": 18}))
    client = make_client(max_attempts=3)
    with pytest.raises(ThrottledError):
        await client.get_status(96)
    await client.get_status(96)
    stats = client.stats
    assert (stats.requests, stats.transient_errors, stats.throttled) == (4, 2, 1)
    assert (stats.retries, stats.succeeded) == (2, 1)


async def test_oversized_body_counts_as_a_transient_error(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.then(answer(b"[" + b"0," * MIB + b"0]"))
    client = make_client()
    with pytest.raises(ResponseFormatError):
        await client.get_status(96)
    assert client.stats.transient_errors == 1


async def test_single_attempt_sends_a_single_request(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.then(answer(status=500), answer(status=500))
    with pytest.raises(TransientError):
        await make_client(max_attempts=1).get_status(96)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("responder", "expected"),
    [
        pytest.param(answer({"error_code": 18}), ThrottledError, id="throttled-code"),
        pytest.param(answer(status=429), ThrottledError, id="throttled-429"),
        pytest.param(answer({"error_code": 500001}), InvalidRequestError, id="invalid"),
        pytest.param(answer(status=403), AuthError, id="auth-403"),
        pytest.param(answer({"error_code": 14}), AuthError, id="auth-code"),
    ],
)
async def test_non_transient_error_is_not_retried(
    server: ScriptedServer,
    make_client: MakeClient,
    responder: Responder,
    expected: type[ApiError],
) -> None:
    server.then(*[responder] * 3)
    with pytest.raises(expected):
        await make_client(max_attempts=3).get_status(96)
    assert len(server.requests) == 1


# --- clock skew ---------------------------------------------------------------------------


async def test_request_expired_with_skewed_server_date_resigns_and_succeeds(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.clock_offset = 15 * 60
    client = make_client(max_attempts=1)
    status = await client.get_status(96)
    assert status.export_id == 96
    assert len(server.requests) == 2
    assert server.signature_problems == []
    assert client.stats.clock_resyncs == 1
    assert client.clock_offset == pytest.approx(15 * 60, abs=5)


async def test_clock_offset_is_kept_for_later_requests(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.clock_offset = -15 * 60
    client = make_client()
    await client.get_status(96)
    await client.get_status(96)
    assert len(server.requests) == 3


async def test_request_expired_only_in_the_body_still_resyncs_the_clock(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.clock_offset = 20 * 60  # the signature's 30 min would cover 15 min ahead

    async def expired_in_body(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"requestId": "req-9", "code": "RequestExpired", "message": "expired"},
            status=400,
            headers={"Date": email.utils.formatdate(server.now(), usegmt=True)},
        )

    server.then(expired_in_body)
    client = make_client()
    assert (await client.get_status(96)).export_id == 96
    assert client.stats.clock_resyncs == 1
    assert len(server.requests) == 2


async def test_request_expired_is_resigned_only_once(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    async def always_expired(request: web.Request) -> web.StreamResponse:
        return bce_error(400, "RequestExpired", date=time.time() + 3600)

    server.then(always_expired, always_expired, always_expired)
    with pytest.raises(AuthError):
        await make_client(max_attempts=3).get_status(96)
    assert len(server.requests) == 2


async def test_request_expired_with_agreeing_date_is_not_resigned(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.then(
        answer(
            status=400,
            headers={
                "X-Bce-Error-Code": "RequestExpired",
                "Date": email.utils.formatdate(time.time(), usegmt=True),
            },
        )
    )
    with pytest.raises(AuthError):
        await make_client().get_status(96)
    assert len(server.requests) == 1


# --- validation before I/O ----------------------------------------------------------------


@pytest.mark.parametrize("export_id", [None, True, 0, -1, 1.5, "", "  ", "a\nb", "x" * 10_000, [1]])
async def test_invalid_export_id_is_rejected_before_any_request(
    server: ScriptedServer, make_client: MakeClient, export_id: Any
) -> None:
    with pytest.raises(ValueError):
        await make_client().get_status(export_id)
    assert server.requests == []


@pytest.mark.parametrize(
    "options",
    [
        {"request_timeout": 0},
        {"request_timeout": -1.0},
        {"request_timeout": True},
        {"max_attempts": 0},
        {"max_attempts": 2.0},
    ],
)
def test_bad_option_is_a_configuration_error(
    credentials: Credentials, options: dict[str, Any]
) -> None:
    with pytest.raises(ConfigurationError):
        ExportStatusClient(credentials, base_url="https://qianfan.baidubce.com", **options)


def test_from_env_reads_credentials_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QIANFAN_ACCESS_KEY", "ak-env")
    monkeypatch.setenv("QIANFAN_SECRET_KEY", "sk-env")
    client = ExportStatusClient.from_env(base_url="https://qianfan.baidubce.com")
    assert client.credentials == Credentials("ak-env", "sk-env")


def test_credentials_must_be_a_credentials_object() -> None:
    with pytest.raises(ConfigurationError, match="Credentials"):
        ExportStatusClient(("ak", "sk"))  # type: ignore[arg-type]


# --- session ownership --------------------------------------------------------------------


async def test_client_closes_the_session_it_made(
    server: ScriptedServer, credentials: Credentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[aiohttp.ClientSession] = []
    real_session = aiohttp.ClientSession

    def recording_session(*args: Any, **kwargs: Any) -> aiohttp.ClientSession:
        made.append(real_session(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(client_module.aiohttp, "ClientSession", recording_session)
    async with ExportStatusClient(credentials, base_url=server.base_url) as client:
        await client.get_status(96)
        assert len(made) == 1 and not made[0].closed
    assert made[0].closed


async def test_client_leaves_a_callers_session_open(
    server: ScriptedServer, credentials: Credentials
) -> None:
    async with aiohttp.ClientSession() as session:
        async with ExportStatusClient(
            credentials, base_url=server.base_url, session=session
        ) as client:
            await client.get_status(96)
        assert not session.closed
        assert len(server.requests) == 1
