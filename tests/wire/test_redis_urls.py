"""One way from a Redis URL to a client for the fleet limiter and the durable queue: the
same refusals (scheme, bad URL, no redis package), each naming the URL with its
credentials masked and never holding them; each keeps its own timeouts. Nothing here
connects."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest

from qianfan_export_wait.durable import queue_from_url
from qianfan_export_wait.errors import ConfigurationError
from qianfan_export_wait.fleet import limiter_from_url

SECRET = "pw-Zq81xT"
MAKERS: dict[str, Callable[[str], Any]] = {
    "fleet": lambda url: limiter_from_url(url, access_key="AK"),
    "durable": lambda url: queue_from_url(url, access_key="AK"),
}


def _refusal(make: Callable[[str], Any], url: str) -> str:
    with pytest.raises(ConfigurationError) as refused:
        make(url)
    return str(refused.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"http://user:{SECRET}@127.0.0.1:6379/0",
         "Redis URL must start with redis://, rediss:// or unix://, got "
         "'http://***@127.0.0.1:6379/0'"),
        (f"redis://:{SECRET}@127.0.0.1:notaport/0",
         "bad Redis URL 'redis://***@127.0.0.1:notaport/0': Port could not be cast to "
         "integer value as 'notaport'"),
        (f"redis://127.0.0.1:6379/0?password={SECRET}&db=x",
         "bad Redis URL 'redis://127.0.0.1:6379/0?password=***&db=x': Invalid value for 'db' "
         "in connection URL."),
    ],
)  # fmt: skip
@pytest.mark.parametrize("maker", MAKERS)
def test_a_bad_url_is_refused_alike_by_name_and_without_its_password(
    maker: str, url: str, expected: str
) -> None:
    message = _refusal(MAKERS[maker], url)
    assert message == expected
    assert SECRET not in message


@pytest.mark.parametrize("maker", MAKERS)
def test_without_the_redis_package_both_name_the_extra(
    maker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "redis" or m.startswith("redis.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis raises ImportError
    message = _refusal(MAKERS[maker], f"redis://:{SECRET}@127.0.0.1:6379/0")
    assert message == (
        "a Redis URL needs the redis package: pip install 'qianfan-export-wait[redis]'"
    )


async def test_each_keeps_its_own_timeouts() -> None:
    url = f"redis://:{SECRET}@127.0.0.1:6379/0"
    limiter = limiter_from_url(url, access_key="AK", timeout=0.5)
    queue = queue_from_url(url, access_key="AK", timeout=3.0, block=2.0)
    try:
        fleet = limiter._redis.connection_pool.connection_kwargs
        durable = queue.redis.connection_pool.connection_kwargs
        assert (fleet["socket_timeout"], fleet["socket_connect_timeout"]) == (0.5, 0.5)
        # the queue's reads may block for ``block`` seconds on top of the timeout
        assert (durable["socket_timeout"], durable["socket_connect_timeout"]) == (5.0, 3.0)
        assert SECRET not in repr(limiter) + repr(queue)
    finally:
        await limiter.aclose()
        await queue.aclose()
