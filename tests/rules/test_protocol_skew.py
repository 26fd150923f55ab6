"""The clock-skew rule (``protocol.skew``), with no server and no event loop: answers are
read by the protocol as the client reads them, and the "service" of the properties is
the simulator's own signature check (``verify_authorization``) at a server time we pick.
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qianfan_export_wait import protocol
from qianfan_export_wait.auth import Credentials
from qianfan_export_wait.endpoints import MAX_CLOCK_OFFSET as ENDPOINTS_MAX_CLOCK_OFFSET
from qianfan_export_wait.errors import ApiError, AuthError
from qianfan_export_wait.protocol.classify import classify_response
from qianfan_export_wait.protocol.skew import (
    MAX_CLOCK_OFFSET,
    MAX_RESIGNS,
    SKEW_THRESHOLD_SECONDS,
    SkewDecision,
    SkewVerdict,
    skew_decision,
)
from qianfan_export_wait.simulator.verify import verify_authorization

CREDENTIALS = Credentials("ak-skew-test", "sk-skew-test-secret")
HOST = "qianfan.baidubce.com"
STATUS = protocol.export_status("v1")
REQUEST = STATUS.build(7)
NOW = 1_800_000_000.0  # a local epoch time, 2027-01-15


def http_date(epoch: float) -> str:
    return email.utils.formatdate(epoch, usegmt=True)


def refused(
    headers: Mapping[str, str], code: str = "RequestExpired", status: int = 401
) -> ApiError:
    """The error the client gets from a refusal with ``headers``, read as it reads one."""
    body = json.dumps({"error_code": 13, "error_msg": code, "log_id": 1}).encode()
    with pytest.raises(ApiError) as caught:
        STATUS.read(
            status,
            {"X-Bce-Error-Code": code, **headers},
            body,
            datetime.fromtimestamp(NOW, UTC),
        )
    return caught.value


def expired_with_date(server_epoch: float) -> ApiError:
    return refused({"Date": http_date(server_epoch)})


def decide(error: ApiError, offset: float = 0.0, **kwargs: float) -> SkewDecision:
    arguments: dict[str, float] = {
        "signed_with": offset,
        "offset": offset,
        "received_at": NOW,
        "resigns": 0,
    }
    arguments.update(kwargs)
    return skew_decision(
        error,
        signed_with=arguments["signed_with"],
        offset=arguments["offset"],
        received_at=arguments["received_at"],
        resigns=int(arguments["resigns"]),
    )


# --- examples --------------------------------------------------------------------------


def test_a_server_fifteen_minutes_behind_is_learnt_from_its_date() -> None:
    error = expired_with_date(NOW - 900)
    assert isinstance(error, AuthError)
    decision = decide(error)
    assert decision.verdict is SkewVerdict.LEARNT
    assert decision.resign and decision.learnt
    assert decision.offset == pytest.approx(-900, abs=1)
    assert decision.measured == decision.offset


def test_the_offset_is_measured_at_the_time_the_answer_arrived() -> None:
    decision = decide(expired_with_date(NOW + 3600), received_at=NOW + 10)
    assert decision.offset == pytest.approx(3590, abs=1)


@pytest.mark.parametrize("code", ["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"])
def test_other_auth_errors_are_never_resigned(code: str) -> None:
    error = refused({"Date": http_date(NOW - 7200)}, code=code)
    decision = decide(error)
    assert decision == SkewDecision(SkewVerdict.NOT_EXPIRED, 0.0)
    assert not decision.resign


def test_request_expired_in_a_gateway_body_without_the_header_counts() -> None:
    error = classify_response(
        400,
        {"code": "RequestExpired", "message": "expired", "requestId": "r1"},
        {"Date": http_date(NOW + 7200)},
    )
    assert error is not None
    assert decide(error).verdict is SkewVerdict.LEARNT


def test_a_request_signed_before_another_answer_moved_the_offset_is_resent_with_it() -> None:
    # No Date needed: the offset another answer taught is used as it is.
    decision = decide(refused({}), signed_with=0.0, offset=-7200.0)
    assert decision == SkewDecision(SkewVerdict.RESEND, -7200.0)
    assert decision.resign and not decision.learnt


def test_no_more_than_max_resigns_for_one_request() -> None:
    error = expired_with_date(NOW - 900)
    assert decide(error, resigns=MAX_RESIGNS - 1).resign
    assert decide(error, resigns=MAX_RESIGNS) == SkewDecision(SkewVerdict.TOO_MANY, 0.0)
    moved = decide(error, signed_with=0.0, offset=-900.0, resigns=MAX_RESIGNS)
    assert moved.verdict is SkewVerdict.TOO_MANY


@pytest.mark.parametrize(
    "date",
    [None, "", "yesterday-ish", "Thu, 32 Foo 2026 99:99:99 GMT"],
    ids=["missing", "empty", "garbage", "impossible-fields"],
)
def test_a_missing_or_unreadable_date_never_resigns(date: str | None) -> None:
    error = refused({} if date is None else {"Date": date})
    assert decide(error, offset=120.0) == SkewDecision(SkewVerdict.NO_DATE, 120.0)


@pytest.mark.parametrize("date", ["Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 01 Jan 0001 00:00:00 GMT"])
def test_a_date_centuries_off_is_not_adopted(date: str) -> None:
    decision = decide(refused({"Date": date}))
    assert decision.verdict is SkewVerdict.DATE_TOO_FAR
    assert decision.offset == 0.0 and not decision.resign
    assert decision.measured is not None and abs(decision.measured) > MAX_CLOCK_OFFSET


@pytest.mark.parametrize("sign", [-1, 1])
def test_the_day_bound_is_inclusive(sign: int) -> None:
    at_bound = decide(expired_with_date(NOW + sign * MAX_CLOCK_OFFSET))
    assert at_bound.verdict is SkewVerdict.LEARNT
    assert at_bound.offset == sign * MAX_CLOCK_OFFSET
    past = decide(expired_with_date(NOW + sign * (MAX_CLOCK_OFFSET + 1)))
    assert past.verdict is SkewVerdict.DATE_TOO_FAR


def test_a_date_that_agrees_with_the_offset_used_is_not_a_new_offset() -> None:
    near = decide(expired_with_date(NOW + 600 + SKEW_THRESHOLD_SECONDS - 1), offset=600.0)
    assert near == SkewDecision(SkewVerdict.SAME_OFFSET, 600.0, 600 + SKEW_THRESHOLD_SECONDS - 1)
    at_threshold = decide(expired_with_date(NOW + 600 + SKEW_THRESHOLD_SECONDS), offset=600.0)
    assert at_threshold.verdict is SkewVerdict.LEARNT


def test_the_endpoints_bound_is_the_rules_bound() -> None:
    assert ENDPOINTS_MAX_CLOCK_OFFSET is MAX_CLOCK_OFFSET


# --- properties ------------------------------------------------------------------------

LATENCY = st.floats(min_value=0.0, max_value=10.0)
SERVER_SKEW = st.floats(min_value=-(MAX_CLOCK_OFFSET - 60), max_value=MAX_CLOCK_OFFSET - 60)
EARLY_BY = 330.0  # signed more than the service's 300 s early, latency included
LATE_BY = 1830.0  # or more than its 1800 s expiration late


@st.composite
def kept_offset_refused(draw: st.DrawFn, server_skew: float) -> float:
    """An offset within the bound that signs outside the service's window when the
    service is ``server_skew`` seconds off the local clock."""
    early = (server_skew + EARLY_BY, MAX_CLOCK_OFFSET)
    late = (-MAX_CLOCK_OFFSET, server_skew - LATE_BY)
    usable = [(low, high) for low, high in (early, late) if low <= high]
    low, high = draw(st.sampled_from(usable))
    return draw(st.floats(min_value=low, max_value=high))


def service_refusal(timestamp: int, server_now: float) -> str | None:
    """The simulator's verdict on a request signed at ``timestamp``, at ``server_now``."""
    headers = protocol.signed_headers(REQUEST, CREDENTIALS, HOST, timestamp)
    failure = verify_authorization(
        CREDENTIALS,
        method=REQUEST.method,
        raw_path=REQUEST.path,
        query=REQUEST.query_params,
        headers=headers,
        now=server_now,
    )
    return None if failure is None else failure.bce_error_code


@settings(max_examples=300)
@given(
    local_at_send=st.floats(min_value=1.6e9, max_value=2.0e9),
    server_skew=SERVER_SKEW,
    data=st.data(),
    to_server=LATENCY,
    answering=LATENCY,
    back=LATENCY,
    before_resend=LATENCY,
    to_server_again=LATENCY,
)
def test_one_resign_lands_the_timestamp_in_the_services_window(
    local_at_send: float,
    server_skew: float,
    data: st.DataObject,
    to_server: float,
    answering: float,
    back: float,
    before_resend: float,
    to_server_again: float,
) -> None:
    offset = data.draw(kept_offset_refused(server_skew), label="kept offset")
    timestamp = int(local_at_send + offset)
    refusal = service_refusal(timestamp, local_at_send + to_server + server_skew)
    assert refusal == "RequestExpired"
    server_date = local_at_send + to_server + answering + server_skew
    received_at = local_at_send + to_server + answering + back

    decision = skew_decision(
        expired_with_date(server_date),
        signed_with=offset,
        offset=offset,
        received_at=received_at,
        resigns=0,
    )

    assert decision.verdict is SkewVerdict.LEARNT
    assert abs(decision.offset) <= MAX_CLOCK_OFFSET
    resent_at = received_at + before_resend
    again = service_refusal(
        int(resent_at + decision.offset), resent_at + to_server_again + server_skew
    )
    assert again is None, "the re-signed request is accepted: one re-sign is enough"


ANSWER_CODE = st.sampled_from(["RequestExpired", "RequestExpired", "SignatureDoesNotMatch"])
DATE_TEXT = st.one_of(
    st.none(),
    st.text(max_size=30),
    st.floats(min_value=-3 * MAX_CLOCK_OFFSET, max_value=3 * MAX_CLOCK_OFFSET).map(
        lambda off: http_date(NOW + off)
    ),
)
OTHERS_MOVE = st.none() | st.floats(min_value=-MAX_CLOCK_OFFSET, max_value=MAX_CLOCK_OFFSET)


@given(
    start=st.floats(min_value=-MAX_CLOCK_OFFSET, max_value=MAX_CLOCK_OFFSET),
    answers=st.lists(st.tuples(ANSWER_CODE, DATE_TEXT, OTHERS_MOVE), min_size=1, max_size=12),
)
def test_any_run_of_refusals_ends_within_max_resigns_and_keeps_the_offset_in_bounds(
    start: float, answers: list[tuple[str, str | None, float | None]]
) -> None:
    # The client's loop for one request: sign with the kept offset, meanwhile another
    # request may move it, the answer is refused, the rule decides.
    offset, resigns = start, 0
    for code, date, others_move in answers:
        signed_with = offset
        if others_move is not None:
            offset = others_move
        printable = None if date is None else "".join(c for c in date if " " <= c <= "~")
        error = refused({} if printable is None else {"Date": printable}, code=code)
        decision = skew_decision(
            error, signed_with=signed_with, offset=offset, received_at=NOW, resigns=resigns
        )
        assert abs(decision.offset) <= MAX_CLOCK_OFFSET
        if decision.verdict is not SkewVerdict.LEARNT:
            assert decision.offset == offset, "only a learnt offset replaces the kept one"
        offset = decision.offset
        if not decision.resign:
            break
        resigns += 1
    assert resigns <= MAX_RESIGNS


@given(
    date=st.none()
    | st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E, blacklist_categories=("Nd",)),
        max_size=40,
    ),
    offset=st.floats(min_value=-MAX_CLOCK_OFFSET, max_value=MAX_CLOCK_OFFSET),
)
def test_a_date_without_a_digit_never_resigns_nor_moves_the_offset(
    date: str | None, offset: float
) -> None:
    error = refused({} if date is None else {"Date": date})
    decision = decide(error, offset=offset)
    assert decision == SkewDecision(SkewVerdict.NO_DATE, offset)


@given(
    days_off=st.floats(min_value=1.0001, max_value=3000.0),
    sign=st.sampled_from([-1, 1]),
    offset=st.floats(min_value=-MAX_CLOCK_OFFSET, max_value=MAX_CLOCK_OFFSET),
)
def test_a_date_more_than_a_day_from_the_local_clock_never_resigns(
    days_off: float, sign: int, offset: float
) -> None:
    error = expired_with_date(NOW + sign * days_off * 86400)
    decision = decide(error, offset=offset)
    assert decision.verdict is SkewVerdict.DATE_TOO_FAR
    assert decision.offset == offset and not decision.resign
