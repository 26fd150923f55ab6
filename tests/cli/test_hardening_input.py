"""Bad input is refused with a clear message before any request: the command line exits
64 while a running simulator at ``--endpoint`` counts zero requests, and the library
raises ``ValueError`` / ``ConfigurationError`` without sending anything."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hardening_support import ACCESS_KEY, SECRET_KEY, cli_env, run_cli

from qianfan_export_wait import (
    ConfigurationError,
    Credentials,
    ExportStatusClient,
    ExportWaiter,
    MissingCredentialsError,
    PollPolicy,
)
from qianfan_export_wait.models import validate_export_id
from qianfan_export_wait.testing import SimulatedQianfan, simulated_qianfan

EXIT_USAGE = 64
LONG_ID = "a" * 10_000


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[SimulatedQianfan]:
    async with simulated_qianfan(
        exports=5, max_seconds=0.0, credentials=Credentials(ACCESS_KEY, SECRET_KEY)
    ) as running:
        yield running


def _port(fake: SimulatedQianfan) -> str:
    return fake.base_url.rsplit(":", 1)[1]


async def refused(fake: SimulatedQianfan, *args: str, **options: Any) -> str:
    """Run the CLI; assert exit 64 with no request at the simulator; return stderr."""
    run = await run_cli(*args, **options)
    assert run.code == EXIT_USAGE, run
    assert run.stdout == ""
    assert fake.stats.total_requests == 0
    return run.stderr


# --- ids on the command line ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_id", "message"),
    [
        pytest.param("-1", "out of range", id="negative"),
        pytest.param("0", "out of range", id="zero"),
        pytest.param("99999999999999999999", "out of range", id="beyond-int64"),
        pytest.param("", "empty", id="empty"),
        pytest.param("   ", "empty", id="blank"),
        pytest.param(LONG_ID, "longer than 128", id="10000-characters"),
        pytest.param("amemt-1\nx", "control characters", id="newline"),
        pytest.param("007", "leading zeros; write 7", id="leading-zeros"),
        pytest.param("9" * 30, "from 1 to 9223372036854775807", id="thirty-digits"),
        pytest.param("9" * 40, "from 1 to 9223372036854775807", id="forty-digits"),
    ],
)
@pytest.mark.parametrize("verb", ["status", "wait"])
async def test_bad_id_exits_64_before_any_request(
    fake: SimulatedQianfan, verb: str, bad_id: str, message: str
) -> None:
    stderr = await refused(fake, verb, "1", bad_id, "--endpoint", fake.base_url)
    assert message in stderr
    assert len(stderr) < 1000, "a 10,000-character id must not be echoed whole"


async def test_nul_in_an_id_from_a_file_exits_64_before_any_request(
    fake: SimulatedQianfan, tmp_path: Path
) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_bytes(b"1\namemt-\x00x\n")
    stderr = await refused(fake, "wait", "--ids-file", str(ids_file), "--endpoint", fake.base_url)
    assert f"{ids_file}:2" in stderr
    assert "control characters" in stderr


# --- credentials ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environment", "named"),
    [
        pytest.param({"access_key": None}, "QIANFAN_ACCESS_KEY", id="access-key-missing"),
        pytest.param({"secret_key": None}, "QIANFAN_SECRET_KEY", id="secret-key-missing"),
        pytest.param({"access_key": ""}, "QIANFAN_ACCESS_KEY", id="access-key-empty"),
        pytest.param({"secret_key": "  "}, "QIANFAN_SECRET_KEY", id="secret-key-blank"),
        pytest.param(
            {"access_key": None, "secret_key": None},
            "QIANFAN_ACCESS_KEY and QIANFAN_SECRET_KEY",
            id="both-missing",
        ),
    ],
)
@pytest.mark.parametrize("verb", ["status", "wait"])
async def test_missing_credentials_exit_64_naming_the_variable(
    fake: SimulatedQianfan, verb: str, environment: dict[str, Any], named: str
) -> None:
    stderr = await refused(fake, verb, "1", "--endpoint", fake.base_url, env=cli_env(**environment))
    assert named in stderr


async def test_access_key_with_a_slash_exits_64_without_echoing_it(
    fake: SimulatedQianfan,
) -> None:
    stderr = await refused(
        fake,
        "status",
        "1",
        "--endpoint",
        fake.base_url,
        env=cli_env(access_key="AKpart/ofsomething-long"),
    )
    assert "AKpart/ofsomething-long" not in stderr
    assert "'/'" in stderr


# --- endpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        pytest.param("127.0.0.1:{port}", "needs a scheme", id="no-scheme"),
        pytest.param("ftp://127.0.0.1:{port}", "needs a scheme", id="ftp-scheme"),
        pytest.param("http://127.0.0.1:{port}/v1", "has a path", id="with-path"),
        pytest.param("http://127.0.0.1:{port}/?a=1", "query", id="with-query"),
        pytest.param(
            "http://user:pw@127.0.0.1:{port}", "must not carry credentials", id="userinfo"
        ),
        pytest.param("http://127.0.0.1:{port}:{port}", "not a URL", id="two-ports"),
        pytest.param("", "empty", id="empty"),
    ],
)
async def test_bad_endpoint_exits_64_before_any_request(
    fake: SimulatedQianfan, endpoint: str, message: str
) -> None:
    bad = endpoint.format(port=_port(fake))
    stderr = await refused(fake, "status", "1", "--endpoint", bad)
    assert message in stderr


async def test_bad_endpoint_from_the_environment_exits_64_before_any_request(
    fake: SimulatedQianfan,
) -> None:
    environment = cli_env(QIANFAN_CONSOLE_API_BASE_URL=f"{fake.base_url}/some/path")
    stderr = await refused(fake, "wait", "1", env=environment)
    assert "has a path" in stderr


async def test_endpoint_with_a_dot_segment_path_exits_64(fake: SimulatedQianfan) -> None:
    await refused(fake, "status", "1", "--endpoint", f"{fake.base_url}/a/..")


# --- numbers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option",
    [
        pytest.param(["--request-timeout", "0"], id="request-timeout-zero"),
        pytest.param(["--request-timeout", "-1"], id="request-timeout-negative"),
        pytest.param(["--request-timeout", "nan"], id="request-timeout-nan"),
        pytest.param(["--request-timeout", "inf"], id="request-timeout-inf"),
        pytest.param(["--request-timeout", "soon"], id="request-timeout-word"),
        pytest.param(["--timeout", "0"], id="timeout-zero"),
        pytest.param(["--timeout", "-5"], id="timeout-negative"),
        pytest.param(["--min-delay", "0"], id="min-delay-zero"),
        pytest.param(["--min-delay", "-0.1"], id="min-delay-negative"),
        pytest.param(["--max-delay", "0"], id="max-delay-zero"),
        pytest.param(["--min-delay", "5", "--max-delay", "1"], id="max-delay-below-min"),
        pytest.param(["--max-in-flight", "0"], id="max-in-flight-zero"),
        pytest.param(["--max-in-flight", "1.5"], id="max-in-flight-fraction"),
        pytest.param(["--qps", "0"], id="qps-zero"),
        pytest.param(["--qps", "-3"], id="qps-negative"),
    ],
)
async def test_bad_number_exits_64_before_any_request(
    fake: SimulatedQianfan, option: list[str]
) -> None:
    stderr = await refused(fake, "wait", "1", *option, "--endpoint", fake.base_url)
    assert option[-2].lstrip("-").replace("-", "_") in stderr.replace("-", "_")


# --- ids files ------------------------------------------------------------------------------


async def test_ids_file_that_does_not_exist_exits_64(
    fake: SimulatedQianfan, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.txt"
    stderr = await refused(fake, "wait", "--ids-file", str(missing), "--endpoint", fake.base_url)
    assert "does not exist" in stderr


async def test_ids_file_that_is_a_directory_exits_64(
    fake: SimulatedQianfan, tmp_path: Path
) -> None:
    stderr = await refused(fake, "wait", "--ids-file", str(tmp_path), "--endpoint", fake.base_url)
    assert "cannot be read" in stderr


async def test_ids_file_that_is_not_utf8_exits_64(fake: SimulatedQianfan, tmp_path: Path) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_bytes(b"1\n\xff\xfe\n")
    stderr = await refused(fake, "wait", "--ids-file", str(ids_file), "--endpoint", fake.base_url)
    assert "cannot be read" in stderr


async def test_ids_file_with_one_bad_line_names_it_and_sends_nothing(
    fake: SimulatedQianfan, tmp_path: Path
) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("1\n2\n# fine\n-7\n3\n", encoding="utf-8")
    stderr = await refused(fake, "wait", "--ids-file", str(ids_file), "--endpoint", fake.base_url)
    assert f"{ids_file}:4" in stderr


async def test_ids_file_skips_blank_lines_and_comments_and_uses_the_rest(
    fake: SimulatedQianfan, tmp_path: Path
) -> None:
    ids_file = tmp_path / "ids.txt"
    text_id = fake.simulator.export(4).export_id_str
    ids_file.write_text(
        f"# exports to wait for\n\n1\n   \n  2  \n\t# indented comment\n{text_id}\n\n",
        encoding="utf-8",
    )
    run = await run_cli(
        "wait", "--ids-file", str(ids_file), "--endpoint", fake.base_url, "--min-delay", "0.05"
    )
    assert run.code == 0, run
    assert [record["export_id"] for record in run.records] == [1, 2, text_id]
    assert fake.stats.total_requests == 3


async def test_ids_file_with_a_bom_crlf_and_trailing_comments_is_read_as_written(
    fake: SimulatedQianfan, tmp_path: Path
) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_bytes(b"\xef\xbb\xbf1 # from Excel\r\n2\t# and a tab\r\n\r\n3#tight\r\n")
    run = await run_cli(
        "wait", "--ids-file", str(ids_file), "--endpoint", fake.base_url, "--min-delay", "0.05"
    )
    assert run.code == 0, run
    assert [record["export_id"] for record in run.records] == [1, 2, 3]


async def test_ids_file_with_a_bare_cr_inside_a_line_names_that_line(
    fake: SimulatedQianfan, tmp_path: Path
) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_bytes(b"1\n2\r3\n")
    stderr = await refused(fake, "wait", "--ids-file", str(ids_file), "--endpoint", fake.base_url)
    assert f"{ids_file}:2" in stderr
    assert "control characters" in stderr


async def test_ids_file_with_only_comments_exits_64(fake: SimulatedQianfan, tmp_path: Path) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("# nothing yet\n\n", encoding="utf-8")
    stderr = await refused(fake, "wait", "--ids-file", str(ids_file), "--endpoint", fake.base_url)
    assert "no export ids" in stderr


# --- the library ----------------------------------------------------------------------------

BAD_IDS = [
    pytest.param(None, id="None"),
    pytest.param(True, id="True"),
    pytest.param(1.5, id="float"),
    pytest.param(-1, id="negative"),
    pytest.param(0, id="zero"),
    pytest.param(2**63, id="beyond-int64"),
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param(LONG_ID, id="10000-characters"),
    pytest.param("amemt-1\nx", id="newline"),
    pytest.param("amemt-\x00", id="nul"),
    pytest.param([1], id="list"),
    pytest.param(b"96", id="bytes"),
]


@pytest.mark.parametrize("bad_id", BAD_IDS)
def test_library_refuses_a_bad_id_with_value_error(bad_id: object) -> None:
    with pytest.raises(ValueError) as caught:
        validate_export_id(bad_id)
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_client_refuses_a_bad_id_before_any_request(
    fake: SimulatedQianfan, bad_id: object
) -> None:
    async with fake.client() as client:
        with pytest.raises(ValueError):
            await client.get_status(bad_id)  # type: ignore[arg-type]
    assert fake.stats.total_requests == 0


@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_waiter_refuses_a_batch_with_a_bad_id_before_any_request(
    fake: SimulatedQianfan, bad_id: object
) -> None:
    async with fake.client() as client:
        waiter = ExportWaiter(client, policy=PollPolicy(min_delay=0.05, max_delay=0.1))
        with pytest.raises(ConfigurationError, match="nothing was sent"):
            await waiter.wait_all([1, 2, bad_id])  # type: ignore[list-item]
    assert fake.stats.total_requests == 0


@pytest.mark.parametrize(
    ("access_key", "secret_key"),
    [("", "sk"), ("ak", ""), ("  ", "sk"), ("ak", "\t"), (None, "sk"), ("ak", 5)],
)
def test_library_refuses_missing_or_empty_credentials(access_key: Any, secret_key: Any) -> None:
    with pytest.raises(MissingCredentialsError):
        Credentials(access_key, secret_key)


@pytest.mark.parametrize(
    "environ",
    [{}, {"QIANFAN_ACCESS_KEY": "ak"}, {"QIANFAN_SECRET_KEY": "sk"}, {"QIANFAN_ACCESS_KEY": ""}],
)
def test_credentials_from_an_incomplete_environment_are_refused(environ: dict[str, str]) -> None:
    with pytest.raises(MissingCredentialsError, match="not set or empty"):
        Credentials.from_env(environ)


@pytest.mark.parametrize("seconds", [0, -1, -0.5, float("nan"), True, "10", None])
def test_library_refuses_a_bad_request_timeout(seconds: Any) -> None:
    with pytest.raises(ConfigurationError):
        ExportStatusClient(
            Credentials("ak", "sk"), base_url="http://127.0.0.1:1", request_timeout=seconds
        )


@pytest.mark.parametrize(
    "options",
    [
        {"min_delay": 0},
        {"min_delay": -1},
        {"max_delay": 0},
        {"min_delay": float("nan")},
        {"max_delay": float("inf")},
        {"timeout": 0},
        {"timeout": -10},
        {"min_delay": 5, "max_delay": 1},
        {"max_consecutive_errors": 0},
    ],
)
def test_library_refuses_bad_poll_timings(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        PollPolicy(**options)


@pytest.mark.parametrize("options", [{"max_in_flight": 0}, {"qps": 0}, {"qps": -1.0}])
def test_library_refuses_bad_waiter_limits(options: dict[str, Any]) -> None:
    client = ExportStatusClient(Credentials("ak", "sk"), base_url="http://127.0.0.1:1")
    with pytest.raises(ConfigurationError):
        ExportWaiter(client, **options)
