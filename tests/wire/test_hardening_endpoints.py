"""TLS, endpoints, redirects and proxies: certificates are verified, plain http goes only
to loopback unless allowed, a redirect is never followed (so the Authorization header
never reaches another server), and proxy variables in the environment are ignored."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from hardening_support import (
    ACCESS_KEY,
    SECRET_KEY,
    cli_env,
    run_cli,
)
from scripted_server import ScriptedServer, recording_server

from qianfan_export_wait import (
    ApiError,
    Credentials,
    ExportStatusClient,
    ExportWaiter,
    OutcomeKind,
    PollPolicy,
    TlsError,
)
from qianfan_export_wait.client import EXPORT_STATUS_PATH
from qianfan_export_wait.testing import simulated_qianfan

CREDENTIALS = Credentials(ACCESS_KEY, SECRET_KEY)

# --- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1 made with the openssl command line."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command line is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


@pytest_asyncio.fixture
async def https_server(self_signed: tuple[Path, Path]) -> AsyncIterator[ScriptedServer]:
    cert, key = self_signed
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    async with recording_server(ssl_context=context) as recorder:
        yield recorder


async def tls_failure(base_url: str, trusted: Path | None = None) -> TlsError:
    """The error a client meets at ``base_url`` (one attempt), trusting ``trusted``."""
    context = ssl.create_default_context(cafile=None if trusted is None else str(trusted))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        client = ExportStatusClient(CREDENTIALS, base_url=base_url, max_attempts=1, session=session)
        with pytest.raises(TlsError) as caught:
            await client.get_status(96)
    return caught.value


async def test_self_signed_certificate_is_refused_as_untrusted_and_nothing_is_sent(
    https_server: ScriptedServer,
) -> None:
    error = await tls_failure(https_server.base_url)
    assert error.problem == "untrusted_certificate"
    assert "not trusted (self-signed certificate)" in str(error)
    assert "SSL_CERT_FILE" in str(error)
    assert https_server.requests == []


async def test_certificate_for_another_name_is_refused_as_a_hostname_mismatch(
    https_server: ScriptedServer, self_signed: tuple[Path, Path]
) -> None:
    # The certificate is for IP 127.0.0.1 only: reached as "localhost", it names another host.
    localhost = https_server.base_url.replace("127.0.0.1", "localhost")
    error = await tls_failure(localhost, trusted=self_signed[0])
    assert error.problem == "hostname_mismatch"
    assert "certificate is for another host name" in str(error)
    assert https_server.requests == []


async def test_https_to_a_plain_http_port_is_refused_as_not_tls() -> None:
    async with recording_server() as plain:
        error = await tls_failure(plain.base_url.replace("http://", "https://"))
        assert plain.requests == []
    assert error.problem == "not_tls"
    assert "does not speak TLS" in str(error)
    assert "authentication" not in str(error)


async def test_self_signed_server_answers_a_client_that_trusts_its_certificate(
    https_server: ScriptedServer, self_signed: tuple[Path, Path]
) -> None:
    # The control for the test above: the server works; only verification stops the client.
    trusting = ssl.create_default_context(cafile=str(self_signed[0]))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusting)) as session:
        client = ExportStatusClient(CREDENTIALS, base_url=https_server.base_url, session=session)
        status = await client.get_status(96)
    assert status.export_id == 96
    assert len(https_server.requests) == 1


async def test_cli_refuses_a_self_signed_certificate_and_sends_nothing(
    https_server: ScriptedServer,
) -> None:
    run = await run_cli("status", "96", "--endpoint", https_server.base_url)
    assert run.code == 77
    assert "certificate is not trusted" in run.records[0]["error"]["message"]
    assert "TLS failed" in run.stderr
    assert "authentication failed" not in run.stderr
    assert "--ca-bundle FILE" in run.stderr
    assert https_server.requests == []


async def test_cli_trusts_a_certificate_given_with_ca_bundle(
    https_server: ScriptedServer, self_signed: tuple[Path, Path]
) -> None:
    run = await run_cli(
        "wait", "96", "--endpoint", https_server.base_url, "--ca-bundle", str(self_signed[0])
    )
    assert run.code == 0, run.stderr
    assert len(https_server.requests) == 1


async def test_cli_trusts_a_certificate_named_by_ssl_cert_file(
    https_server: ScriptedServer, self_signed: tuple[Path, Path]
) -> None:
    environment = cli_env(SSL_CERT_FILE=str(self_signed[0]))
    run = await run_cli("status", "96", "--endpoint", https_server.base_url, env=environment)
    assert run.code == 0, run.stderr
    assert len(https_server.requests) == 1


@pytest.mark.parametrize(
    ("content", "problem"), [(None, "does not exist"), (b"not a certificate", "is not a PEM file")]
)
async def test_cli_refuses_a_bad_ca_bundle_naming_the_flag_before_any_request(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    bundle = tmp_path / "bundle.pem"
    if content is not None:
        bundle.write_bytes(content)
    async with recording_server() as server:
        run = await run_cli(
            "status", "96", "--endpoint", server.base_url, "--ca-bundle", str(bundle)
        )
    assert run.code == 64
    assert f"--ca-bundle '{bundle}' {problem}" in run.stderr
    assert server.requests == []


# --- plain http -----------------------------------------------------------------------------


async def test_cli_refuses_plain_http_to_a_non_loopback_host_naming_the_flag_that_allows_it() -> (
    None
):
    run = await run_cli("status", "96", "--endpoint", "http://example.com")
    assert run.code == 64
    assert "--insecure-http" in run.stderr


# --- redirects ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("target_host", ["127.0.0.1", "localhost"])
async def test_redirect_is_not_followed_and_authorization_stays_home(
    status: int, target_host: str
) -> None:
    async def accept(request: web.Request) -> web.StreamResponse:
        return web.Response(text="reached")

    async with recording_server(accept) as elsewhere:
        target = elsewhere.base_url.replace("127.0.0.1", target_host) + EXPORT_STATUS_PATH

        async def redirect(request: web.Request) -> web.StreamResponse:
            return web.Response(status=status, headers={"Location": target})

        async with recording_server(redirect) as origin:
            async with ExportStatusClient(
                CREDENTIALS, base_url=origin.base_url, max_attempts=1
            ) as client:
                with pytest.raises(ApiError) as caught:
                    await client.get_status(96)
            # The control: a client that does follow redirects reaches the other server.
            async with aiohttp.ClientSession() as session:
                async with session.post(origin.base_url + EXPORT_STATUS_PATH, json={}) as reply:
                    assert await reply.text() == "reached"
    assert caught.value.http_status == status
    assert len(origin.requests) == 2
    assert "Authorization" in origin.requests[0].headers
    assert len(elsewhere.requests) == 1, "only the control request may arrive"
    assert "Authorization" not in elsewhere.requests[0].headers


async def test_waiter_ends_a_redirected_export_as_an_error_and_finishes_the_rest() -> None:
    async with recording_server() as elsewhere:

        async def redirect_odd_ids(request: web.Request) -> web.StreamResponse:
            export_id = (await request.json())["exportID"]
            if export_id % 2:
                location = elsewhere.base_url + EXPORT_STATUS_PATH
                return web.Response(status=307, headers={"Location": location})
            return await ScriptedServer(None).handle(request)

        async with recording_server(redirect_odd_ids) as origin:
            async with ExportStatusClient(CREDENTIALS, base_url=origin.base_url) as client:
                waiter = ExportWaiter(client, policy=PollPolicy(min_delay=0.05, max_delay=0.1))
                report = await waiter.wait_all(range(1, 11))
    assert {i: report[i].kind for i in range(1, 11)} == {
        i: OutcomeKind.ERROR if i % 2 else OutcomeKind.DONE for i in range(1, 11)
    }
    assert elsewhere.requests == []


# --- proxies --------------------------------------------------------------------------------


async def test_proxy_variables_in_the_environment_are_ignored() -> None:
    async with recording_server() as proxy:
        async with simulated_qianfan(exports=2, max_seconds=0.0, credentials=CREDENTIALS) as fake:
            proxies = {
                name: proxy.base_url
                for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy")
            }
            environment = cli_env(**proxies)
            del environment["NO_PROXY"]
            run = await run_cli("status", "1", "2", "--endpoint", fake.base_url, env=environment)
            requests = fake.stats.total_requests
    assert run.code == 0, run
    assert requests == 2
    assert proxy.requests == []


async def test_connection_refused_is_an_error_outcome_not_a_crash() -> None:
    # A closed port on loopback: the CLI reports an error line and exits 1.
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    run = await run_cli("status", "7", "--endpoint", f"http://127.0.0.1:{port}")
    assert run.code == 1, run
    [record] = run.records
    assert record["outcome"] == "error"
    assert "connection failed" in record["error"]["message"]
