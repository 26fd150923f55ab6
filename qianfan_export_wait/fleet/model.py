"""The fleet limiter's arithmetic: the Lua script Redis runs atomically, and a pure Python
mirror of it that the tests hold the script to (and that is the specification).

State lives in one Redis hash per account (the fields below) and a sorted set of live
replicas. Times are microseconds on Redis's clock. One script serves every operation, so a
reload after a restart or ``FLUSHALL`` (``NOSCRIPT``) is one ``SCRIPT LOAD``:

* ``fixed``: GCRA reservation at a fixed interval: book the slot ``max(tat, now)``, move
  the theoretical arrival time ``tat`` one interval on, answer the delay.
* ``adaptive``: the same at the shared rate, after growing it as
  :class:`~qianfan_export_wait.ratelimit.AdaptiveRateLimiter` does (slow start, approach,
  probe), while some replica was held back by the limiter and successes are reported.
  Sends are counted in 50 ms buckets by slot time (a ring of three seconds, as slots may be
  booked ahead), so a throttle can read what the fleet got through in the last second.
* ``throttle``: a replica saw throttled answers. Honour ``Retry-After``; in adaptive mode
  estimate the server's limit from the fleet's accepted requests in the last second, cut
  the shared rate once per batch of requests booked at the old rate, and hold every
  replica until that second has room again. A request booked after a cut and throttled
  all the same means the server's window is still full (a fixed window that slow start
  overran): then every replica holds until a second after that cut.
* ``heartbeat`` / ``leave``: a replica's entry in the live set (score: last beat). Every
  reservation's reply also carries the live set's size, so a replica's view of the fleet
  is as fresh as its last call, and how long ago the state was last rebuilt.

When the hash is gone (first use, ``FLUSHALL``, a restart without persistence) the script
rebuilds it from the caller's last view (rate, ceiling, ticket), so losing Redis's memory
neither bursts over the limit nor restarts slow start.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "BUCKETS",
    "BUCKET_US",
    "FLEET_SCRIPT",
    "RING",
    "AdaptiveParams",
    "FleetModel",
    "Hint",
    "booked_share",
    "fallback_rate",
    "fixed_interval_us",
    "fleet_key",
]

BUCKET_US = 50_000
BUCKETS = 20  # 20 x 50 ms: the last second
RING = 60  # buckets kept: slots booked up to two seconds ahead never land on the last second
_SECOND = 1_000_000.0


@dataclass(frozen=True, slots=True)
class AdaptiveParams:
    """The shared AIMD's knobs; the defaults are those of ``AdaptiveRateLimiter``."""

    initial_rate: float = 20.0
    min_rate: float = 1.0
    max_rate: float = 50_000.0
    doubling_period: float = 0.1
    decrease_factor: float = 0.8
    target_share: float = 0.95
    approach_period: float = 0.5
    probe_share_per_second: float = 0.01

    def __post_init__(self) -> None:
        if not 0 < self.min_rate <= self.initial_rate <= self.max_rate:
            raise ValueError("expected 0 < min_rate <= initial_rate <= max_rate")
        if not 0 < self.decrease_factor < 1 or not 0 < self.target_share <= 1:
            raise ValueError("decrease_factor must be in (0, 1) and target_share in (0, 1]")
        if not self.doubling_period > 0 or not self.approach_period > 0:
            raise ValueError("doubling_period and approach_period must be > 0")

    def grow_args(self) -> list[str]:
        """The script's arguments for growth, in its order."""
        return [
            _fmt(value)
            for value in (
                self.initial_rate,
                self.min_rate,
                self.max_rate,
                self.doubling_period * _SECOND,
                self.target_share,
                self.approach_period * _SECOND,
                self.probe_share_per_second,
            )
        ]


@dataclass(frozen=True, slots=True)
class Hint:
    """A replica's last view of the shared state, to rebuild it from when Redis lost it."""

    rate: float | None = None
    ceiling: float | None = None
    seq: int = 0

    def args(self) -> list[str]:
        """The script's hint arguments, in its order ("" for unknown)."""
        return [
            "" if self.rate is None else _fmt(self.rate),
            "" if self.ceiling is None else _fmt(self.ceiling),
            str(self.seq),
        ]


def _fmt(value: float) -> str:
    return repr(float(value))  # the shortest text that reads back as the same double


def fleet_key(access_key: str) -> str:
    """The default key prefix for an account: a hash of the access key, never the key.

    The braces make it a Redis Cluster hash tag, so the state and the live set share a slot.
    """
    digest = hashlib.sha256(access_key.encode("utf-8")).hexdigest()[:16]
    return f"qianfan-export-wait:{{{digest}}}"


def fixed_interval_us(qps: float) -> float:
    """The spacing of fixed-rate slots: a microsecond over ``1/qps``, so the rounding of
    times near 1.7e15 us (a quarter of a microsecond) never fits ``qps + 1`` in a second."""
    return _SECOND / qps + 1.0


def fallback_rate(shared_rate: float, live_replicas: int, booked_share: float = 1.0) -> float:
    """A replica's local rate while Redis is unreachable: the last shared rate over the live
    replicas, or less if the replica was booking a smaller share of the fleet's slots (a
    replica that has just joined may not have seen the others' heartbeats yet)."""
    if not shared_rate > 0 or math.isinf(shared_rate):
        raise ValueError(f"shared_rate must be a finite number > 0, got {shared_rate!r}")
    return shared_rate * min(1.0 / max(1, live_replicas), max(booked_share, 0.0) or 1.0)


def booked_share(own_tickets: Sequence[int]) -> float:
    """The share of the fleet's slots a replica booked, from its own recent tickets (the
    fleet's tickets are one sequence): 1 when it cannot tell."""
    if len(own_tickets) < 2 or own_tickets[-1] <= own_tickets[0]:
        return 1.0
    return (len(own_tickets) - 1) / (own_tickets[-1] - own_tickets[0])


FLEET_SCRIPT = r"""
local op = ARGV[1]
local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local ttl = tonumber(ARGV[3])
local state, replicas = KEYS[1], KEYS[2]
local BUCKET, BUCKETS, RING, SECOND = 50000, 20, 60, 1000000

local function fmt(x) return string.format('%.17g', x) end

if op == 'heartbeat' then
  redis.call('ZADD', replicas, now, ARGV[4])
  redis.call('ZREMRANGEBYSCORE', replicas, '-inf', '(' .. fmt(now - tonumber(ARGV[5])))
  redis.call('PEXPIRE', replicas, ttl)
  local rate = redis.call('HGET', state, 'rate')
  return {redis.call('ZCARD', replicas), rate or ''}
end
if op == 'leave' then
  return redis.call('ZREM', replicas, ARGV[4])
end

if op == 'fixed' then
  local f = redis.call('HMGET', state, 'tat', 'seq', 'rebuilt_at')
  local seq = (tonumber(f[2]) or tonumber(ARGV[5])) + 1
  local slot = math.max(tonumber(f[1]) or now, now)
  local rebuilt_at = tonumber(f[3]) or 0
  if not f[1] then rebuilt_at = now end
  redis.call('HSET', state, 'tat', fmt(slot + tonumber(ARGV[4])), 'seq', seq,
             'rebuilt_at', fmt(rebuilt_at))
  redis.call('PEXPIRE', state, ttl)
  return {fmt(slot - now), seq, redis.call('ZCARD', replicas), fmt(now - rebuilt_at)}
end

-- adaptive and throttle: ARGV[4..6] the caller's hint (rate, ceiling, seq)
local names = {'tat', 'seq', 'rate', 'ceil', 'grow_at', 'blocked_at', 'success_at',
               'cut_at', 'cut_seq', 'rebuilt_at'}
local f = redis.call('HMGET', state, unpack(names))
local s = {}
for i, name in ipairs(names) do s[name] = tonumber(f[i]) end
if not s.tat then s.rebuilt_at = now end
s.rebuilt_at = s.rebuilt_at or 0
if not s.rate then
  s.rate = tonumber(ARGV[4]) or tonumber(ARGV[7])
  s.ceil = tonumber(ARGV[5])
  s.seq = s.seq or tonumber(ARGV[6])
  s.tat = s.tat or now
  s.grow_at, s.blocked_at, s.success_at = now, 0, 0
  if s.ceil then s.cut_at = now else s.cut_at = 0 end
  s.cut_seq = s.seq
end

local function bump(prefix, at, n)
  local idx = math.floor(at / BUCKET)
  local k = idx % RING
  if tonumber(redis.call('HGET', state, prefix .. 'e' .. k)) == idx then
    redis.call('HINCRBY', state, prefix .. 'c' .. k, n)
  else
    redis.call('HSET', state, prefix .. 'e' .. k, idx, prefix .. 'c' .. k, n)
  end
end

local function save()
  redis.call('HSET', state, 'tat', fmt(s.tat), 'seq', s.seq, 'rate', fmt(s.rate),
             'grow_at', fmt(s.grow_at), 'blocked_at', fmt(s.blocked_at),
             'success_at', fmt(s.success_at), 'cut_at', fmt(s.cut_at), 'cut_seq', s.cut_seq,
             'rebuilt_at', fmt(s.rebuilt_at))
  if s.ceil then redis.call('HSET', state, 'ceil', fmt(s.ceil))
  else redis.call('HDEL', state, 'ceil') end
  redis.call('PEXPIRE', state, ttl)
end

local function reply(delay)
  local ceil = ''
  if s.ceil then ceil = fmt(s.ceil) end
  return {fmt(delay), s.seq, fmt(s.rate), ceil, redis.call('ZCARD', replicas),
          fmt(now - s.rebuilt_at)}
end

if op == 'adaptive' then
  -- ARGV[7..13] initial, min, max, doubling_us, target_share, approach_us, probe; ARGV[14]
  -- the successes this replica saw since its last call
  local max_rate, doubling = tonumber(ARGV[9]), tonumber(ARGV[10])
  local target_share, approach = tonumber(ARGV[11]), tonumber(ARGV[12])
  local probe = tonumber(ARGV[13])
  if tonumber(ARGV[14]) > 0 then s.success_at = now end
  local slot = math.max(s.tat, now)
  if slot > now then s.blocked_at = now end
  local elapsed = math.min(now - s.grow_at, SECOND)
  s.grow_at = now
  if now - s.blocked_at <= SECOND and now - s.success_at <= SECOND and elapsed > 0 then
    local rate = s.rate
    if not s.ceil then
      rate = rate * 2 ^ (elapsed / doubling)
    else
      local target = s.ceil * target_share
      if rate < target * 0.99 then
        rate = rate + (target - rate) * math.min(1, elapsed / approach)
      else
        local quiet = (now - s.cut_at) / (10 * SECOND)
        rate = rate + s.ceil * probe * (1 + quiet * quiet) * (elapsed / SECOND)
        if rate > s.ceil * 1.2 then s.ceil = nil end
      end
    end
    s.rate = math.min(rate, max_rate)
  end
  s.tat = slot + SECOND / s.rate
  s.seq = s.seq + 1
  bump('s', slot, 1)
  save()
  return reply(slot - now)
end

if op == 'throttle' then
  -- ARGV[7] initial, ARGV[8] min_rate, ARGV[9] decrease, ARGV[10] 'adaptive' or 'fixed',
  -- ARGV[11] throttled answers, ARGV[12] their highest ticket, ARGV[13] Retry-After in us
  local min_rate, decrease = tonumber(ARGV[8]), tonumber(ARGV[9])
  local retry_after = tonumber(ARGV[13])
  if retry_after > 0 then s.tat = math.max(s.tat, now + retry_after) end
  if ARGV[10] == 'fixed' then
    redis.call('HSET', state, 'tat', fmt(s.tat), 'rebuilt_at', fmt(s.rebuilt_at))
    redis.call('PEXPIRE', state, ttl)
    return {fmt(0), s.seq, '', ''}
  end
  bump('t', now, tonumber(ARGV[11]))
  local newest = math.floor(now / BUCKET)
  local sent, throttled, oldest = 0, 0, nil
  for idx = newest - BUCKETS + 1, newest do
    local k = idx % RING
    local e = redis.call('HMGET', state, 'se' .. k, 'sc' .. k, 'te' .. k, 'tc' .. k)
    if tonumber(e[1]) == idx and tonumber(e[2]) > 0 then
      sent = sent + tonumber(e[2])
      if not oldest then oldest = idx end
    end
    if tonumber(e[3]) == idx then throttled = throttled + tonumber(e[4]) end
  end
  local accepted = math.max(0, sent - throttled)
  if accepted > 0 then s.tat = math.max(s.tat, oldest * BUCKET + SECOND) end
  if tonumber(ARGV[12]) > s.cut_seq then
    -- Booked after a cut less than a second ago and still throttled: the server's window
    -- is full. Hold until a second after that cut, when any one-second window has turned.
    if now - s.cut_at < SECOND then s.tat = math.max(s.tat, s.cut_at + SECOND) end
    local reading = accepted
    if accepted == 0 then reading = s.rate * decrease end
    local measured = math.max(reading, min_rate)
    if not s.ceil or now - s.cut_at > 2 * SECOND then s.ceil = measured
    else s.ceil = math.min(s.ceil, measured) end
    s.rate = math.max(min_rate, math.min(s.rate, s.ceil) * decrease)
    s.cut_seq, s.cut_at = s.seq, now
    s.tat = math.max(s.tat, now + SECOND / s.rate)
  end
  save()
  return reply(0)
end
return redis.error_reply('unknown operation ' .. tostring(op))
"""


class FleetModel:
    """The script's ``fixed``, ``adaptive`` and ``throttle`` operations on a dict that stands
    for the state hash (field -> number), line for line. Pure: the caller passes ``now``."""

    def __init__(self, params: AdaptiveParams | None = None) -> None:
        self.params = params or AdaptiveParams()
        self.fields: dict[str, float] = {}

    def fixed(self, now: float, interval: float, hint_seq: int = 0) -> tuple[float, int]:
        """Book a slot ``interval`` us after the previous one; return (delay us, ticket)."""
        fields = self.fields
        seq = int(fields.get("seq", hint_seq)) + 1
        slot = max(fields.get("tat", now), now)
        fields["rebuilt_at"] = fields.get("rebuilt_at", 0.0) if "tat" in fields else now
        fields["tat"] = slot + interval
        fields["seq"] = seq
        return slot - now, seq

    def _load(self, now: float, hint: Hint) -> dict[str, float | None]:
        fields = self.fields
        state: dict[str, float | None] = {
            name: fields.get(name)
            for name in (
                "tat",
                "seq",
                "rate",
                "ceil",
                "grow_at",
                "blocked_at",
                "success_at",
                "cut_at",
                "cut_seq",
                "rebuilt_at",
            )
        }
        if state["tat"] is None:
            state["rebuilt_at"] = now
        if state["rebuilt_at"] is None:
            state["rebuilt_at"] = 0.0
        if state["rate"] is None:
            state["rate"] = hint.rate if hint.rate is not None else self.params.initial_rate
            state["ceil"] = hint.ceiling
            state["seq"] = state["seq"] if state["seq"] is not None else hint.seq
            state["tat"] = state["tat"] if state["tat"] is not None else now
            state["grow_at"], state["blocked_at"], state["success_at"] = now, 0.0, 0.0
            state["cut_at"] = now if hint.ceiling is not None else 0.0
            state["cut_seq"] = state["seq"]
        return state

    def _save(self, state: dict[str, float | None]) -> None:
        for name, value in state.items():
            if value is not None:
                self.fields[name] = value
        if state["ceil"] is None:
            self.fields.pop("ceil", None)

    def _bump(self, prefix: str, at: float, count: float) -> None:
        idx = math.floor(at / BUCKET_US)
        k = idx % RING
        if self.fields.get(f"{prefix}e{k}") == idx:
            self.fields[f"{prefix}c{k}"] += count
        else:
            self.fields[f"{prefix}e{k}"] = idx
            self.fields[f"{prefix}c{k}"] = count

    def adaptive(
        self, now: float, successes: int, hint: Hint = Hint()
    ) -> tuple[float, int, float, float | None]:
        """Grow the shared rate if due, book a slot; return (delay us, ticket, rate, ceiling)."""
        p = self.params
        s = self._load(now, hint)
        tat, rate, grow_at = _f(s["tat"]), _f(s["rate"]), _f(s["grow_at"])
        ceil = s["ceil"]
        if successes > 0:
            s["success_at"] = now
        slot = max(tat, now)
        if slot > now:
            s["blocked_at"] = now
        elapsed = min(now - grow_at, _SECOND)
        s["grow_at"] = now
        if (
            now - _f(s["blocked_at"]) <= _SECOND
            and now - _f(s["success_at"]) <= _SECOND
            and elapsed > 0
        ):
            if ceil is None:
                rate = rate * 2.0 ** (elapsed / (p.doubling_period * _SECOND))
            else:
                target = ceil * p.target_share
                if rate < target * 0.99:
                    rate = rate + (target - rate) * min(1, elapsed / (p.approach_period * _SECOND))
                else:
                    quiet = (now - _f(s["cut_at"])) / (10 * _SECOND)
                    rate = rate + ceil * p.probe_share_per_second * (1 + quiet * quiet) * (
                        elapsed / _SECOND
                    )
                    if rate > ceil * 1.2:
                        s["ceil"] = None
            s["rate"] = rate = min(rate, p.max_rate)
        s["tat"] = slot + _SECOND / rate
        seq = int(_f(s["seq"])) + 1
        s["seq"] = seq
        self._bump("s", slot, 1)
        self._save(s)
        return slot - now, seq, rate, s["ceil"]

    def throttle(
        self,
        now: float,
        count: int,
        max_ticket: int,
        retry_after: float = 0.0,
        *,
        adaptive: bool = True,
        hint: Hint = Hint(),
    ) -> tuple[float, float | None]:
        """Record ``count`` throttled answers; return the shared (rate, ceiling)."""
        p = self.params
        s = self._load(now, hint)
        if retry_after > 0:
            s["tat"] = max(_f(s["tat"]), now + retry_after)
        if not adaptive:
            self.fields["tat"] = _f(s["tat"])
            self.fields["rebuilt_at"] = _f(s["rebuilt_at"])
            return _f(s["rate"]), s["ceil"]
        self._bump("t", now, count)
        newest = math.floor(now / BUCKET_US)
        sent = throttled = 0.0
        oldest: int | None = None
        for idx in range(newest - BUCKETS + 1, newest + 1):
            k = idx % RING
            if self.fields.get(f"se{k}") == idx and self.fields[f"sc{k}"] > 0:
                sent += self.fields[f"sc{k}"]
                if oldest is None:
                    oldest = idx
            if self.fields.get(f"te{k}") == idx:
                throttled += self.fields[f"tc{k}"]
        accepted = max(0.0, sent - throttled)
        if accepted > 0 and oldest is not None:
            s["tat"] = max(_f(s["tat"]), oldest * BUCKET_US + _SECOND)
        if max_ticket > _f(s["cut_seq"]):
            if now - _f(s["cut_at"]) < _SECOND:
                s["tat"] = max(_f(s["tat"]), _f(s["cut_at"]) + _SECOND)
            reading = accepted if accepted != 0 else _f(s["rate"]) * p.decrease_factor
            measured = max(reading, p.min_rate)
            ceil = s["ceil"]
            if ceil is None or now - _f(s["cut_at"]) > 2 * _SECOND:
                ceil = measured
            else:
                ceil = min(ceil, measured)
            s["ceil"] = ceil
            s["rate"] = max(p.min_rate, min(_f(s["rate"]), ceil) * p.decrease_factor)
            s["cut_seq"], s["cut_at"] = s["seq"], now
            s["tat"] = max(_f(s["tat"]), now + _SECOND / _f(s["rate"]))
        self._save(s)
        return _f(s["rate"]), s["ceil"]


def _f(value: float | None) -> float:
    assert value is not None
    return value
