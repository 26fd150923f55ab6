"""The simulator over real HTTP on 127.0.0.1: states, ids, errors, authentication, clock."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy
from statuses import RESULT_FIELDS
from yarl import URL

from qianfan_export_wait import (
    AuthError,
    Credentials,
    ExportState,
    ExportStatusClient,
    InvalidRequestError,
)
from qianfan_export_wait.auth import canonical_headers, canonical_time, signature_for
from qianfan_export_wait.client import EXPORT_STATUS_PATH
from qianfan_export_wait.testing import (
    SimulatedQianfan,
    signed_status_headers,
    simulated_qianfan,
)


@pytest.fixture
async def fake() -> AsyncIterator[SimulatedQianfan]:
    async with simulated_qianfan(seed=1) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


async def post_raw(
    session: aiohttp.ClientSession,
    fake: SimulatedQianfan,
    headers: dict[str, str],
    body: bytes = b'{"exportID":1}',
) -> tuple[int, Any, CIMultiDictProxy[str]]:
    async with session.post(fake.base_url + EXPORT_STATUS_PATH, data=body, headers=headers) as r:
        return r.status, json.loads(await r.read()), r.headers


def unix_seconds() -> int:
    return int(time.time())


# -- states ---------------------------------------------------------------------------


async def test_pending_export_is_reported_pending(fake: SimulatedQianfan) -> None:
    export = fake.add_export(finish_after=60, uploading_after=30)
    async with fake.client(max_attempts=1) as client:
        status = await client.get_status(export.export_id)
    assert status.state is ExportState.PENDING
    assert status.download_url == ""


async def test_uploading_export_is_reported_uploading(fake: SimulatedQianfan) -> None:
    export = fake.add_export(finish_after=60, uploading_after=0)
    async with fake.client(max_attempts=1) as client:
        status = await client.get_status(export.export_id)
    assert status.state is ExportState.UPLOADING


async def test_done_local_export_carries_download_url(fake: SimulatedQianfan) -> None:
    export = fake.add_export(finish_after=0, export_type="local")
    async with fake.client(max_attempts=1) as client:
        status = await client.get_status(export.export_id)
    assert status.state is ExportState.DONE
    assert status.export_type == "local"
    # A presigned link on the simulator itself, ending in the exported file's name.
    link = URL(status.download_url or "", encoded=True)
    assert link.origin() == URL(fake.base_url)
    assert link.path.endswith("/" + (status.export_path or "?").rpartition("/")[2])
    assert link.query["authorization"].startswith("bce-auth-v1/")
    assert status.volume_id == ""


async def test_done_storage_export_carries_volume_id(fake: SimulatedQianfan) -> None:
    export = fake.add_export(finish_after=0, export_type="storage")
    async with fake.client(max_attempts=1) as client:
        status = await client.get_status(export.export_id)
    assert status.state is ExportState.DONE
    assert status.export_type == "storage"
    assert status.volume_id
    assert status.download_url == ""


async def test_failed_export_is_reported_fail(fake: SimulatedQianfan) -> None:
    export = fake.add_export(finish_after=0, fail=True)
    async with fake.client(max_attempts=1) as client:
        status = await client.get_status(export.export_id)
    assert status.state is ExportState.FAIL


async def test_answer_has_every_documented_field(fake: SimulatedQianfan) -> None:
    export = fake.add_export(finish_after=0)
    async with fake.client(max_attempts=1) as client:
        status = await client.get_status(export.export_id)
    assert set(status.raw) == set(RESULT_FIELDS)
    assert status.id_str and status.id_str.startswith("ame-")
    assert status.log_id and status.log_id.isdigit()


async def test_held_export_stays_uploading_until_completed(fake: SimulatedQianfan) -> None:
    export = fake.add_export(finish_after=0.05, uploading_after=0)
    fake.hold(export.export_id)
    async with fake.client(max_attempts=1) as client:
        before = await client.get_status(export.export_id)
        fake.complete(export.export_id)
        after = await client.get_status(export.export_id)
    assert (before.state, after.state) == (ExportState.UPLOADING, ExportState.DONE)


async def test_fail_by_hand_turns_a_running_export_fail(fake: SimulatedQianfan) -> None:
    export = fake.add_export(finish_after=60)
    fake.fail(export.export_id_str)
    async with fake.client(max_attempts=1) as client:
        status = await client.get_status(export.export_id)
    assert status.state is ExportState.FAIL


async def test_finished_at_is_the_monotonic_time_it_became_terminal(
    fake: SimulatedQianfan,
) -> None:
    export = fake.add_export(finish_after=60)
    assert export.finished_at is None
    before = time.monotonic()
    fake.complete(export.export_id)
    assert export.finished_at is not None
    assert before <= export.finished_at <= time.monotonic()


# -- ids ------------------------------------------------------------------------------


async def test_export_is_found_by_its_string_id(fake: SimulatedQianfan) -> None:
    export = fake.add_export(finish_after=0)
    async with fake.client(max_attempts=1) as client:
        status = await client.get_status(export.export_id_str)
    assert (status.export_id, status.export_id_str) == (export.export_id, export.export_id_str)


async def test_string_ids_have_the_documented_shape(fake: SimulatedQianfan) -> None:
    exports = fake.add_exports(50)
    assert all(
        e.export_id_str.startswith("amemt-")
        and len(e.export_id_str) == 18
        and e.export_id_str[6:].isalnum()
        and e.export_id_str[6:] == e.export_id_str[6:].lower()
        for e in exports
    )
    assert len({e.export_id_str for e in exports}) == 50


async def test_numeric_string_is_not_the_int_id(fake: SimulatedQianfan) -> None:
    fake.add_export(finish_after=0)
    async with fake.client(max_attempts=1) as client:
        with pytest.raises(InvalidRequestError) as caught:
            await client.get_status("1")
    assert caught.value.code == 500001


async def test_unknown_id_answers_param_invalid_with_http_200(
    fake: SimulatedQianfan, session: aiohttp.ClientSession
) -> None:
    status, body, _ = await post_raw(
        session,
        fake,
        signed_status_headers(fake.credentials, fake.base_url),
        b'{"exportID":424242}',
    )
    assert status == 200
    assert body["error_code"] == 500001
    assert body["error_msg"] == "param invalid"
    assert body["log_id"]


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"[]",
        b"{}",
        b'{"exportId":1}',
        b'{"exportID":1.0}',
        b'{"exportID":true}',
        b'{"exportID":null}',
        b'{"exportID":[1]}',
        b'{"exportID":"amemt-"}',
    ],
)
async def test_malformed_body_answers_param_invalid(
    fake: SimulatedQianfan, session: aiohttp.ClientSession, body: bytes
) -> None:
    fake.add_export(finish_after=0)
    headers = signed_status_headers(fake.credentials, fake.base_url)
    status, answer, _ = await post_raw(session, fake, headers, body)
    assert (status, answer["error_code"]) == (200, 500001)


# -- authentication -------------------------------------------------------------------


async def test_wrong_secret_key_is_rejected_as_signature_mismatch(
    fake: SimulatedQianfan,
) -> None:
    fake.add_export(finish_after=0)
    wrong = Credentials(fake.credentials.access_key, "not-the-secret-key")
    async with ExportStatusClient(wrong, base_url=fake.base_url, max_attempts=1) as client:
        with pytest.raises(AuthError) as caught:
            await client.get_status(1)
    assert caught.value.http_status == 401
    assert caught.value.bce_error_code == "SignatureDoesNotMatch"


async def test_wrong_access_key_is_rejected_as_invalid_access_key_id(
    fake: SimulatedQianfan, session: aiohttp.ClientSession
) -> None:
    other = Credentials("some-other-access-key", fake.credentials.secret_key)
    status, body, headers = await post_raw(
        session, fake, signed_status_headers(other, fake.base_url)
    )
    assert status == 401
    assert headers["X-Bce-Error-Code"] == "InvalidAccessKeyId"
    assert isinstance(body["error_code"], int)


async def test_changed_signed_header_value_is_rejected(
    fake: SimulatedQianfan, session: aiohttp.ClientSession
) -> None:
    headers = signed_status_headers(fake.credentials, fake.base_url)
    headers["Content-Type"] = "application/json; charset=utf-8"
    status, _, answer_headers = await post_raw(session, fake, headers)
    assert (status, answer_headers["X-Bce-Error-Code"]) == (401, "SignatureDoesNotMatch")


async def test_changed_unsigned_header_does_not_matter(
    fake: SimulatedQianfan, session: aiohttp.ClientSession
) -> None:
    fake.add_export(finish_after=0)
    headers = signed_status_headers(fake.credentials, fake.base_url)
    headers["User-Agent"] = "something-else/1.0"
    status, body, _ = await post_raw(session, fake, headers)
    assert (status, body["result"]["exportID"]) == (200, 1)


async def test_expired_timestamp_is_rejected_as_request_expired(
    fake: SimulatedQianfan, session: aiohttp.ClientSession
) -> None:
    headers = signed_status_headers(
        fake.credentials,
        fake.base_url,
        timestamp=unix_seconds() - 1900,
        expiration_seconds=1800,
    )
    status, _, answer_headers = await post_raw(session, fake, headers)
    assert (status, answer_headers["X-Bce-Error-Code"]) == (401, "RequestExpired")


async def test_timestamp_more_than_five_minutes_ahead_is_rejected(
    fake: SimulatedQianfan, session: aiohttp.ClientSession
) -> None:
    headers = signed_status_headers(fake.credentials, fake.base_url, timestamp=unix_seconds() + 360)
    status, _, answer_headers = await post_raw(session, fake, headers)
    assert (status, answer_headers["X-Bce-Error-Code"]) == (401, "RequestExpired")


async def test_timestamp_slightly_ahead_is_accepted(
    fake: SimulatedQianfan, session: aiohttp.ClientSession
) -> None:
    fake.add_export(finish_after=0)
    headers = signed_status_headers(fake.credentials, fake.base_url, timestamp=unix_seconds() + 200)
    status, body, _ = await post_raw(session, fake, headers)
    assert (status, body["result"]["state"]) == (200, "Done")


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer abc",
        "bce-auth-v1/ak/2024-01-04T03:20:30Z/1800//not-hex",
        "bce-auth-v1/ak/2024-01-04T03:20:30Z\u00e9/1800//" + "0" * 64,
    ],
)
async def test_missing_or_malformed_authorization_is_rejected(
    fake: SimulatedQianfan, session: aiohttp.ClientSession, authorization: str | None
) -> None:
    headers = signed_status_headers(fake.credentials, fake.base_url)
    del headers["Authorization"]
    if authorization is not None:
        headers["Authorization"] = authorization
    status, body, answer_headers = await post_raw(session, fake, headers)
    assert (status, answer_headers["X-Bce-Error-Code"]) == (401, "InvalidHTTPAuthHeader")
    assert body["error_msg"]


async def test_signed_headers_listed_in_any_order_are_accepted(
    fake: SimulatedQianfan, session: aiohttp.ClientSession
) -> None:
    fake.add_export(finish_after=0)
    headers = signed_status_headers(fake.credentials, fake.base_url)
    prefix, listed, signature = headers["Authorization"].rsplit("/", 2)
    reordered = ";".join(reversed(listed.split(";")))
    assert reordered != listed
    headers["Authorization"] = f"{prefix}/{reordered}/{signature}"
    status, body, _ = await post_raw(session, fake, headers)
    assert (status, body["result"]["exportID"]) == (200, 1)


async def test_empty_signed_headers_means_the_default_set(
    fake: SimulatedQianfan, session: aiohttp.ClientSession
) -> None:
    fake.add_export(finish_after=0)
    # The default set includes content-length, so it must be known when signing.
    headers = signed_status_headers(
        fake.credentials,
        fake.base_url,
        headers_to_sign=None,
        extra_headers={"Content-Length": str(len(b'{"exportID":1}'))},
    )
    assert "//" in headers["Authorization"]
    status, body, _ = await post_raw(session, fake, headers)
    assert (status, body["result"]["exportID"]) == (200, 1)


async def test_official_sdk_request_shape_is_accepted(
    fake: SimulatedQianfan, session: aiohttp.ClientSession
) -> None:
    # qianfan 0.4.12 signs every header it sets, listed in set order (unsorted),
    # with a 300-second expiration; the path is used as is.
    export = fake.add_export(finish_after=0, export_type="storage")
    timestamp = canonical_time(unix_seconds())
    headers = {
        "Content-Type": "application/json",
        "Host": fake.base_url.removeprefix("http://"),
        "request-source": "qianfan_py_sdk_v0.4.12.3",
        "x-bce-date": timestamp,
    }
    listed = ("host", "content-type", "request-source", "x-bce-date")
    prefix = f"bce-auth-v1/{fake.credentials.access_key}/{timestamp}/300"
    canonical_request = "\n".join(
        ("POST", EXPORT_STATUS_PATH, "", canonical_headers(headers, listed))
    )
    signature = signature_for(fake.credentials, prefix, canonical_request)
    headers["Authorization"] = f"{prefix}/{';'.join(listed)}/{signature}"
    body = json.dumps({"exportID": export.export_id_str}).encode()
    status, answer, _ = await post_raw(session, fake, headers, body)
    assert status == 200
    assert answer["result"]["exportID"] == export.export_id
    assert answer["result"]["volumeId"]


async def test_auth_failures_do_not_use_up_the_qps_limit(
    fake: SimulatedQianfan, session: aiohttp.ClientSession
) -> None:
    fake.add_export(finish_after=0)
    fake.configure(qps=1)
    bad = signed_status_headers(Credentials("intruder", "guess"), fake.base_url)
    for _ in range(3):
        status, _, _ = await post_raw(session, fake, bad)
        assert status == 401
    status, body, _ = await post_raw(
        session, fake, signed_status_headers(fake.credentials, fake.base_url)
    )
    assert (status, body["result"]["exportID"]) == (200, 1)


# -- clock ----------------------------------------------------------------------------


async def test_date_header_follows_the_clock_skew(
    fake: SimulatedQianfan, session: aiohttp.ClientSession
) -> None:
    fake.configure(clock_skew=900.0)
    _, _, headers = await post_raw(session, fake, {})
    server_time = email.utils.parsedate_to_datetime(headers["Date"]).timestamp()
    assert server_time == pytest.approx(time.time() + 900, abs=3)


async def test_client_whose_clock_is_15_minutes_ahead_is_expired(
    fake: SimulatedQianfan, session: aiohttp.ClientSession
) -> None:
    fake.configure(clock_skew=-900.0)
    headers = signed_status_headers(fake.credentials, fake.base_url)
    status, _, answer_headers = await post_raw(session, fake, headers)
    assert (status, answer_headers["X-Bce-Error-Code"]) == (401, "RequestExpired")


async def test_client_signing_by_the_servers_date_header_is_accepted(
    fake: SimulatedQianfan, session: aiohttp.ClientSession
) -> None:
    fake.add_export(finish_after=0)
    fake.configure(clock_skew=-900.0)
    _, _, rejected_headers = await post_raw(
        session, fake, signed_status_headers(fake.credentials, fake.base_url)
    )
    server_time = email.utils.parsedate_to_datetime(rejected_headers["Date"])
    headers = signed_status_headers(fake.credentials, fake.base_url, timestamp=server_time)
    status, body, _ = await post_raw(session, fake, headers)
    assert (status, body["result"]["exportID"]) == (200, 1)


async def test_client_resyncs_to_a_server_15_minutes_behind(fake: SimulatedQianfan) -> None:
    fake.add_export(finish_after=0)
    fake.configure(clock_skew=-900.0)
    async with fake.client(max_attempts=1) as client:
        status = await client.get_status(1)
    assert status.state is ExportState.DONE
    assert client.clock_offset == pytest.approx(-900, abs=3)


# -- observability --------------------------------------------------------------------


async def test_polls_are_counted_per_export(fake: SimulatedQianfan) -> None:
    first, second = fake.add_export(finish_after=0), fake.add_export(finish_after=0)
    async with fake.client(max_attempts=1) as client:
        for _ in range(3):
            await client.get_status(first.export_id)
        await client.get_status(second.export_id_str)
    assert fake.stats.polls_by_export == {first.export_id: 3, second.export_id: 1}


async def test_stats_endpoint_reports_outcomes_without_per_export_records(
    fake: SimulatedQianfan, session: aiohttp.ClientSession
) -> None:
    fake.add_export(finish_after=0)
    async with fake.client(max_attempts=1) as client:
        await client.get_status(1)
        with pytest.raises(InvalidRequestError):
            await client.get_status(2)
    async with session.get(fake.base_url + "/_sim/stats") as response:
        stats = await response.json()
    assert stats["total_requests"] == 2
    assert stats["requests_by_outcome"]["ok"] == 1
    assert stats["requests_by_outcome"]["invalid"] == 1
    assert stats["exports"]["by_state"]["Done"] == 1
    assert "export_records" not in stats


async def test_stats_endpoint_lists_exports_when_asked(
    fake: SimulatedQianfan, session: aiohttp.ClientSession
) -> None:
    export = fake.add_export(finish_after=0)
    async with session.get(fake.base_url + "/_sim/stats?exports=1") as response:
        stats = await response.json()
    (record,) = stats["export_records"]
    assert record["exportID"] == export.export_id
    assert record["finished_at"] == pytest.approx(export.finish_at)
    assert record["state"] == "Done"


async def test_stats_endpoint_serves_the_request_log_when_asked(
    fake: SimulatedQianfan, session: aiohttp.ClientSession
) -> None:
    fake.add_export(finish_after=0)
    fake.stats.keep_request_log()
    async with fake.client(max_attempts=1) as client:
        await client.get_status(1)
    async with session.get(fake.base_url + "/_sim/stats?requests=1") as response:
        stats = await response.json()
    ((at, outcome),) = stats["request_log"]
    assert outcome == "ok"
    assert at <= stats["monotonic_now"]


async def test_log_ids_are_digit_strings_that_differ(
    fake: SimulatedQianfan, session: aiohttp.ClientSession
) -> None:
    fake.add_export(finish_after=0)
    log_ids = set()
    for _ in range(3):
        _, body, _ = await post_raw(
            session, fake, signed_status_headers(fake.credentials, fake.base_url)
        )
        log_ids.add(body["log_id"])
    assert len(log_ids) == 3
    assert all(isinstance(log_id, str) and log_id.isdigit() for log_id in log_ids)
