"""Secrets: the secret key never appears in anything printed or logged at any level, in
exception text, in a repr, or in the JSON lines; the access key is shown only as its first
four characters."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import pickle
import signal
import traceback
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web
from hardening_support import (
    ACCESS_KEY,
    CLI,
    SECRET_KEY,
    SHUTDOWN_WARNINGS,
    CliRun,
    cli_env,
    run_cli,
    unused_port,
)
from scripted_server import (
    MakeClient,
    Responder,
    ScriptedServer,
    answer,
    recording_server,
    reset_connection,
)
from statuses import v1_body

from qianfan_export_wait import (
    AuthError,
    ConfigurationError,
    Credentials,
    ExportStatusClient,
    ExportWaiter,
    MissingCredentialsError,
    PollPolicy,
)
from qianfan_export_wait.auth import parse_authorization
from qianfan_export_wait.errors import ApiError, ThrottledError
from qianfan_export_wait.simulator import FaultRates
from qianfan_export_wait.testing import SimulatedQianfan, simulated_qianfan

MASKED_ACCESS_KEY = ACCESS_KEY[:4] + "..."
CREDENTIALS = Credentials(ACCESS_KEY, SECRET_KEY)
OTHER_CREDENTIALS = Credentials(ACCESS_KEY, "the-simulator-expects-this-one")
FAULTS = FaultRates.even(0.3)


def assert_no_secrets(text: str) -> None:
    assert SECRET_KEY not in text
    assert ACCESS_KEY not in text, "the full access key must never be shown"


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[SimulatedQianfan]:
    async with simulated_qianfan(
        exports=30, max_seconds=0.5, fail_ratio=0.2, faults=FAULTS, slow_delay=0.05, seed=9,
        credentials=CREDENTIALS,
    ) as running:  # fmt: skip
        yield running


@pytest_asyncio.fixture
async def wrong_secret() -> AsyncIterator[SimulatedQianfan]:
    async with simulated_qianfan(exports=5, credentials=OTHER_CREDENTIALS) as running:
        yield running


def verbose_env() -> dict[str, str]:
    return cli_env(PYTHONDEVMODE="1", PYTHONWARNINGS="always")


def assert_clean(run: CliRun) -> None:
    assert_no_secrets(run.stdout + run.stderr)
    for warning in SHUTDOWN_WARNINGS:
        assert warning not in run.stderr


# --- the whole command line -----------------------------------------------------------------


@pytest.mark.parametrize("verb", ["status", "wait"])
async def test_verbose_cli_through_auth_failure_shows_only_the_masked_access_key(
    wrong_secret: SimulatedQianfan, verb: str
) -> None:
    run = await run_cli(
        verb, "1", "2", "--endpoint", wrong_secret.base_url, "--verbose", env=verbose_env()
    )
    assert run.code == 77, run
    assert_clean(run)
    assert MASKED_ACCESS_KEY in run.stderr


async def test_verbose_cli_wait_through_faults_to_success_never_shows_the_secret(
    fake: SimulatedQianfan,
) -> None:
    run = await run_cli(
        "wait", *map(str, range(1, 31)), "--endpoint", fake.base_url, "--verbose",
        "--min-delay", "0.05", "--max-delay", "0.2", "--request-timeout", "2",
        env=verbose_env(),
    )  # fmt: skip
    assert run.code == 1, run  # 20% of the exports fail
    assert len(run.records) == 30
    assert fake.stats.requests_by_outcome["http_500"] > 0
    assert "DEBUG" in run.stderr
    assert_clean(run)


async def test_verbose_cli_status_through_faults_never_shows_the_secret(
    fake: SimulatedQianfan,
) -> None:
    run = await run_cli(
        "status", *map(str, range(1, 31)), "99999", "--endpoint", fake.base_url, "--verbose",
        env=verbose_env(),
    )  # fmt: skip
    assert len(run.records) == 31
    assert_clean(run)


async def test_cli_usage_errors_never_show_the_secret() -> None:
    port = unused_port()
    for args in (
        ["status", "-1", "--endpoint", f"http://127.0.0.1:{port}"],
        ["status", "1", "--endpoint", f"http://u:{SECRET_KEY}@127.0.0.1:{port}"],
        ["status", "1", "--endpoint", f"http://127.0.0.1:{port}", "--verbose"],
    ):
        run = await run_cli(*args, env=verbose_env())
        assert run.code in (1, 64), run
        assert_clean(run)


@pytest.mark.parametrize(
    "endpoint",
    [
        f"user:{SECRET_KEY}@127.0.0.1:1",
        f"ftp://user:{SECRET_KEY}@127.0.0.1:1",
        f"http://user:{SECRET_KEY}@127.0.0.1:99999",
    ],
    ids=["no-scheme", "ftp", "bad-port"],
)
def test_password_in_a_malformed_endpoint_is_not_echoed(endpoint: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ExportStatusClient(CREDENTIALS, base_url=endpoint)
    assert SECRET_KEY not in str(caught.value)


async def test_simulate_verb_never_shows_its_secret_or_full_access_key() -> None:
    port = unused_port()
    simulator = await asyncio.create_subprocess_exec(
        *CLI, "simulate", "--port", str(port), "--exports", "4", "--max-seconds", "0.1",
        "--faults", "0.3", "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, "--verbose",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=cli_env(access_key=None, secret_key=None, PYTHONDEVMODE="1"),
    )  # fmt: skip
    assert simulator.stderr is not None
    try:
        banner = b""
        while b"listening on" not in banner:  # debug lines (-v) may come first
            line = await asyncio.wait_for(simulator.stderr.readline(), 20)
            assert line, f"the simulator ended before its banner: {banner!r}"
            banner += line
        client_runs = [
            await run_cli(
                "wait", "1", "2", "3", "4", "--endpoint", f"http://127.0.0.1:{port}",
                "--min-delay", "0.05", "--verbose", env=verbose_env(),
            ),
            await run_cli(
                "status", "1", "--endpoint", f"http://127.0.0.1:{port}", "--verbose",
                env=cli_env(secret_key="a-wrong-secret"),
            ),
        ]  # fmt: skip
    finally:
        simulator.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(simulator.communicate(), 20)
    assert [run.code for run in client_runs] == [0, 77]
    for run in client_runs:
        assert_clean(run)
    printed = (banner + out + err).decode("utf-8")
    assert_no_secrets(printed)
    assert MASKED_ACCESS_KEY in printed


# --- the library ----------------------------------------------------------------------------


async def test_debug_logs_of_every_logger_never_show_the_secret(
    fake: SimulatedQianfan, wrong_secret: SimulatedQianfan, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="qianfan_export_wait")
    policy = PollPolicy(min_delay=0.05, max_delay=0.2, timeout=20)
    async with ExportStatusClient(CREDENTIALS, base_url=fake.base_url, request_timeout=2) as client:
        await ExportWaiter(client, policy=policy).wait_all([*range(1, 31), 424242])
    async with ExportStatusClient(CREDENTIALS, base_url=wrong_secret.base_url) as client:
        report = await ExportWaiter(client, policy=policy).wait_all([1, 2, 3])
    assert report.auth_error is not None
    assert any(record.levelno == logging.DEBUG for record in caplog.records)
    assert any(MASKED_ACCESS_KEY in record.getMessage() for record in caplog.records)
    for record in caplog.records:
        assert_no_secrets(f"{record.getMessage()} {record.args!r} {record.exc_text or ''}")
    assert_no_secrets(caplog.text)


async def test_errors_from_a_real_auth_failure_hide_the_secret_everywhere(
    wrong_secret: SimulatedQianfan,
) -> None:
    async with ExportStatusClient(CREDENTIALS, base_url=wrong_secret.base_url) as client:
        with pytest.raises(AuthError) as caught:
            await client.get_status(1)
    error = caught.value
    rendered = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    for text in (str(error), repr(error), rendered, repr(vars(error)), repr(error.to_dict())):
        assert_no_secrets(text)


def test_missing_credentials_error_does_not_echo_the_other_key() -> None:
    with pytest.raises(MissingCredentialsError) as caught:
        Credentials.from_env({"QIANFAN_SECRET_KEY": SECRET_KEY})
    assert_no_secrets(str(caught.value))
    with pytest.raises(MissingCredentialsError) as caught:
        Credentials(ACCESS_KEY + " ", SECRET_KEY)
    assert_no_secrets(str(caught.value))


async def test_repr_and_str_of_every_object_holding_credentials_hide_them(
    fake: SimulatedQianfan,
) -> None:
    async with fake.client() as client:
        waiter = ExportWaiter(client, policy=PollPolicy(min_delay=0.05, max_delay=0.1))
        report = await waiter.wait_all([1, 2, 999999])
        objects: list[object] = [
            CREDENTIALS, client, client.stats, waiter, waiter.stats, waiter.policy, report,
            *report.outcomes, fake, fake.simulator, fake.simulator.config,
        ]  # fmt: skip
        for thing in objects:
            assert_no_secrets(repr(thing))
            assert_no_secrets(str(thing))
    assert MASKED_ACCESS_KEY in repr(CREDENTIALS)


def test_credentials_cannot_be_pickled() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(CREDENTIALS)


# --- the client on its own, against the scripted server ------------------------------------


def _signing_keys(server: ScriptedServer, credentials: Credentials) -> set[str]:
    return {
        hmac.new(
            credentials.secret_key.encode(),
            parse_authorization(received.headers["Authorization"]).prefix.encode(),
            hashlib.sha256,
        ).hexdigest()
        for received in server.requests
    }


async def test_neither_the_secret_nor_a_signing_key_appears_in_debug_logs(
    server: ScriptedServer,
    make_client: MakeClient,
    credentials: Credentials,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name in (
        "qianfan_export_wait",
        "aiohttp",
        "aiohttp.client",
        "aiohttp.access",
        "aiohttp.server",
        "aiohttp.web",
        "aiohttp.internal",
        "asyncio",
    ):
        caplog.set_level(logging.DEBUG, logger=name)
    server.clock_offset = 15 * 60
    server.then(answer(status=503), answer({"error_code": 18}))
    client = make_client(max_attempts=3)
    with pytest.raises(ThrottledError):
        await client.get_status(96)
    await client.get_status("amemt-hkkf5y9e64j8")
    assert caplog.records, "expected the client to log at DEBUG"
    secrets = {credentials.secret_key} | _signing_keys(server, credentials)
    for record in caplog.records:
        text = " ".join(
            (record.getMessage(), repr(record.args), record.exc_text or "", str(record.__dict__))
        )
        for secret in secrets:
            assert secret not in text


@pytest.mark.parametrize(
    "responder",
    [answer(status=401), answer(b"not json"), reset_connection, answer({"error_code": 18})],
    ids=["auth", "format", "reset", "throttled"],
)
async def test_the_secret_never_appears_in_the_text_of_an_api_error(
    server: ScriptedServer,
    make_client: MakeClient,
    credentials: Credentials,
    responder: Responder,
) -> None:
    server.then(responder)
    with pytest.raises(ApiError) as caught:
        await make_client().get_status(96)
    error = caught.value
    rendered = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    for text in (str(error), repr(error), rendered, repr(error.__dict__)):
        assert credentials.secret_key not in text


# --- a server that echoes our request headers back -----------------------------------------


def _echoes(status: int, shape: str) -> Responder:
    """An answer that quotes the request's headers (Authorization among them) in every
    field a client might show: the message, the request id, the error code, an id."""

    async def respond(request: web.Request) -> web.StreamResponse:
        authorization = request.headers["Authorization"]
        quoted = f"bad request; you sent {dict(request.headers)!r}"
        headers = {"X-Bce-Request-Id": authorization}
        if shape == "gateway":
            headers["X-Bce-Error-Code"] = authorization
            body: dict[str, object] = {"code": authorization, "message": quoted}
        elif shape == "qianfan":
            body = {"error_code": authorization, "error_msg": quoted, "log_id": authorization}
        else:  # an answer about another export, whose id is the header
            body = v1_body(97, documented=True)
            body["result"]["exportIDStr"] = authorization
            body["log_id"] = authorization
        return web.json_response(body, status=status, headers=headers)

    return respond


ECHOES = [
    pytest.param(_echoes(403, "gateway"), id="auth-403"),
    pytest.param(_echoes(400, "gateway"), id="gateway-400"),
    pytest.param(_echoes(200, "qianfan"), id="qianfan-200"),
    pytest.param(_echoes(503, "qianfan"), id="transient-503"),
    pytest.param(_echoes(200, "another-export"), id="another-export"),
]


@pytest.mark.parametrize("responder", ECHOES)
async def test_an_answer_that_echoes_our_headers_shows_neither_access_key_nor_signature(
    server: ScriptedServer,
    make_client: MakeClient,
    credentials: Credentials,
    responder: Responder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="qianfan_export_wait")
    server.then(responder)
    with pytest.raises(ApiError) as caught:
        await make_client().get_status("amemt-hkkf5y9e64j8")
    sent = server.requests[-1].headers["Authorization"]
    signature = parse_authorization(sent).signature
    error = caught.value
    rendered = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    shown = [str(error), repr(error), rendered, repr(error.__dict__), repr(error.to_dict())]
    shown += [record.getMessage() for record in caplog.records]
    for text in shown:
        assert credentials.access_key not in text
        assert signature not in text
        assert sent not in text
    assert credentials.access_key[:4] + "..." in str(error) or "<hidden>" in str(error)


async def test_cli_against_a_server_that_echoes_our_headers_never_prints_them() -> None:
    async with recording_server(_echoes(403, "gateway")) as server:
        run = await run_cli(
            "wait", "1", "2", "--endpoint", server.base_url, "--verbose", env=verbose_env()
        )
    seen = [received.headers["Authorization"] for received in server.requests]
    assert run.code == 77, run.stderr[-2000:]
    assert seen, "the server must have been asked"
    assert_clean(run)
    for authorization in seen:
        assert parse_authorization(authorization).signature not in run.stdout + run.stderr
