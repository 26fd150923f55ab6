"""Authentication failures in a long-lived waiter: callers get the error at once, at the
cost of one request; after ``PollPolicy.auth_cooldown`` one request tries again, so a
fixed key or a passing refusal needs no new waiter.

On the virtual clock against an in-memory client (``waiter_support``), and against the
scripted server (tests/support/scripted_server.py) with the real client for ``RequestExpired``
without a ``Date``.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from scripted_server import MakeClient, ScriptedServer, bce_error
from waiter_support import make_waiter

from qianfan_export_wait import AuthError, ExportWaiter, OutcomeKind, PollPolicy
from qianfan_export_wait.waiting import VirtualClock

COOLDOWN = 30.0
POLICY = PollPolicy(min_delay=1, max_delay=10, timeout=100, auth_cooldown=COOLDOWN)


def _forbidden() -> AuthError:
    return AuthError("Access denied", http_status=403, bce_error_code="AccessDenied")


class Key:
    """The account's key as the server sees it: refused until ``fixed``."""

    def __init__(self) -> None:
        self.fixed = False

    def answer(self) -> str | AuthError:
        return "Done" if self.fixed else _forbidden()


async def test_after_the_cooldown_a_fixed_key_needs_no_new_waiter() -> None:
    # Before: one 403 made every later wait raise AuthError, with no request, for the
    # life of the waiter, even after the key was fixed.
    key = Key()
    waiter, client, clock = make_waiter({1: [key.answer], 2: [key.answer]}, policy=POLICY)
    with pytest.raises(AuthError):
        await waiter.wait(1)
    assert client.stats.requests == 1
    key.fixed = True
    clock.advance(COOLDOWN - 1)
    with pytest.raises(AuthError):  # still cooling down: at once, nothing sent
        await waiter.wait(2)
    assert client.stats.requests == 1
    clock.advance(1)
    status = await waiter.wait(1)
    assert status.state_name == "Done"
    assert (await waiter.wait(2)).state_name == "Done"
    assert client.stats.requests == 3


async def test_callers_during_the_cooldown_cost_no_request() -> None:
    waiter, client, clock = make_waiter({i: [_forbidden] for i in range(1, 51)}, policy=POLICY)
    first = await asyncio.gather(*(waiter.wait(i) for i in range(1, 51)), return_exceptions=True)
    assert all(isinstance(result, AuthError) for result in first)
    assert client.stats.requests == 1  # the first request goes alone
    for step in range(10):
        clock.advance(COOLDOWN / 11)
        with pytest.raises(AuthError):
            waiter.submit(step + 1)
        report_error = None
        try:
            await waiter.wait_all([1, 2, 3])
        except AuthError as error:
            report_error = error
        assert report_error is not None
    assert client.stats.requests == 1


async def test_after_the_cooldown_many_callers_share_one_probe_and_its_refusal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = Key()
    waiter, client, clock = make_waiter({i: [key.answer] for i in range(1, 21)}, policy=POLICY)
    with caplog.at_level(logging.ERROR, logger="qianfan_export_wait"):
        with pytest.raises(AuthError):
            await waiter.wait(1)
        clock.advance(COOLDOWN)
        again = await asyncio.gather(
            *(waiter.wait(i) for i in range(1, 21)), return_exceptions=True
        )
    assert all(isinstance(result, AuthError) for result in again), again
    assert client.stats.requests == 2, "one probe for twenty callers"
    failures = [r for r in caplog.records if "authentication failed" in r.getMessage()]
    assert len(failures) == 2, "logged once per refusal, not once per caller"
    key.fixed = True
    clock.advance(COOLDOWN)
    report = await waiter.wait_all(range(1, 21))
    assert {outcome.kind for outcome in report.values()} == {OutcomeKind.DONE}


async def test_the_cooldown_is_an_option_and_zero_tries_every_time() -> None:
    waiter, client, _ = make_waiter(
        {1: [_forbidden, _forbidden, "Done"]},
        policy=PollPolicy(min_delay=1, max_delay=10, timeout=100, auth_cooldown=0),
    )
    for _ in range(2):
        with pytest.raises(AuthError):
            await waiter.wait(1)
    assert (await waiter.wait(1)).state_name == "Done"
    assert client.stats.requests == 3


async def test_request_expired_without_a_date_passes_after_the_cooldown(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    # The real client over the wire: RequestExpired with no Date to learn the offset from
    # is an AuthError; before, it too poisoned the waiter for good.
    server.then(lambda request: _expired_without_date())
    clock = VirtualClock()
    async with make_client() as client:
        waiter = ExportWaiter(client, policy=POLICY, clock=clock)
        with pytest.raises(AuthError, match="RequestExpired"):
            await waiter.wait(96)
        with pytest.raises(AuthError, match="RequestExpired"):
            await waiter.wait(97)
        clock.advance(COOLDOWN)
        status = await waiter.wait(96)
        await waiter.aclose()
    assert status.state_name == "Done"
    assert len(server.requests) == 2


async def _expired_without_date() -> object:
    return bce_error(400, "RequestExpired")
