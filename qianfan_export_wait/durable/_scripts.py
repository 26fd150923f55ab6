"""The durable queue's layout on Redis, and the scripts that change it atomically. Pure.

Every key shares the fleet limiter's prefix (``fleet_key``), so its hash tag puts the
queue in the limiter's Redis Cluster slot::

    {prefix}:dq:ids        stream: one entry per id waited for (fields id, api, deadline);
                           consumer group "workers" hands each to one worker, keeps it
                           pending until the worker writes its outcome
    {prefix}:dq:jobs       hash: id -> "entry|deadline|api" while it is waited for, so a
                           second submit of the id joins the first
    {prefix}:dq:o:<id>     string: the outcome (JSON), written once (SET NX), with a TTL
    {prefix}:dq:done       stream: one entry per outcome written (field id), what
                           ``result`` blocks on

An id is stored as its JSON text (``96`` and ``"96"`` stay two ids). Deadlines are
seconds on Redis's clock (``TIME``), so replicas on hosts whose clocks disagree agree on
them.
"""

from __future__ import annotations

import json

from ..models import ExportId, validate_export_id

__all__ = [
    "FINISH_SCRIPT",
    "GROUP",
    "REFRESH_SCRIPT",
    "RELEASED_CONSUMER",
    "RELEASE_SCRIPT",
    "SUBMIT_SCRIPT",
    "QueueKeys",
    "decode_id",
    "encode_id",
]

GROUP = "workers"
RELEASED_CONSUMER = "(released)"
"""Who holds an id a draining worker handed back, until a live worker adopts it."""


def encode_id(export_id: ExportId) -> str:
    """An export id as stored in Redis: its JSON text."""
    return json.dumps(export_id, ensure_ascii=True)


def decode_id(text: str | bytes) -> ExportId:
    """The export id stored as ``text``; ``ValueError`` if it is not one."""
    value = json.loads(text)
    return validate_export_id(value)


class QueueKeys:
    """The key names of one queue (``prefix``: a fleet key, braces and all)."""

    __slots__ = ("done", "ids", "jobs", "outcome_prefix", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.ids = f"{prefix}:dq:ids"
        self.jobs = f"{prefix}:dq:jobs"
        self.done = f"{prefix}:dq:done"
        self.outcome_prefix = f"{prefix}:dq:o:"

    def outcome(self, encoded: str) -> str:
        """The key of one id's outcome."""
        return self.outcome_prefix + encoded


_ENSURE_GROUP = r"""
local function ensure_group(stream, group)
  local ok, err = pcall(redis.call, 'XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
  if not ok and not string.find(tostring(err.err or err), 'BUSYGROUP') then
    return redis.error_reply(tostring(err.err or err))
  end
end
local function now_s()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

SUBMIT_SCRIPT = (
    _ENSURE_GROUP
    + r"""
-- KEYS: ids stream, jobs hash, then one outcome key per id.
-- ARGV: group, mode ('timeout' or 'deadline'), then (id, api, value) per id; value is
-- seconds from now (mode timeout) or Redis time (mode deadline), '' for none.
-- Reply per id: {'queued'|'joined'|'finished', deadline or ''}; then Redis's time.
local stream, jobs, group, mode = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
ensure_group(stream, group)
local now = now_s()
local reply = {}
for i = 1, (#ARGV - 2) / 3 do
  local id, api, value = ARGV[3 * i], ARGV[3 * i + 1], ARGV[3 * i + 2]
  if redis.call('EXISTS', KEYS[2 + i]) == 1 then
    reply[i] = {'finished', ''}
  else
    local job = redis.call('HGET', jobs, id)
    if job then
      local _, _, deadline = string.find(job, '^[^|]*|([^|]*)|')
      reply[i] = {'joined', deadline}
    else
      local deadline = ''
      if value ~= '' then
        if mode == 'timeout' then deadline = string.format('%.6f', now + tonumber(value))
        else deadline = value end
      end
      local entry = redis.call('XADD', stream, '*', 'id', id, 'api', api, 'deadline', deadline)
      redis.call('HSET', jobs, id, entry .. '|' .. deadline .. '|' .. api)
      reply[i] = {'queued', deadline}
    end
  end
end
reply[#reply + 1] = string.format('%.6f', now)
return reply
"""
)

FINISH_SCRIPT = r"""
-- KEYS: ids stream, jobs hash, done stream, then one outcome key per id.
-- ARGV: group, ttl in ms, done stream's approximate length, then (id, entry, outcome)
-- per id. The first outcome written for an id stands (SET NX); the entry is acknowledged
-- and deleted either way. Reply: 1 per id whose outcome this call wrote, else 0.
local stream, jobs, done = KEYS[1], KEYS[2], KEYS[3]
local group, ttl, maxlen = ARGV[1], ARGV[2], ARGV[3]
local reply = {}
for i = 1, (#ARGV - 3) / 3 do
  local id, entry, outcome = ARGV[3 * i + 1], ARGV[3 * i + 2], ARGV[3 * i + 3]
  local written = redis.call('SET', KEYS[3 + i], outcome, 'NX', 'PX', ttl)
  if written then
    redis.call('XADD', done, 'MAXLEN', '~', maxlen, '*', 'id', id)
    reply[i] = 1
  else
    reply[i] = 0
  end
  local job = redis.call('HGET', jobs, id)
  if job then
    local current = string.match(job, '^([^|]*)|')
    if current ~= entry then
      pcall(redis.call, 'XACK', stream, group, current)
      redis.call('XDEL', stream, current)
    end
    redis.call('HDEL', jobs, id)
  end
  pcall(redis.call, 'XACK', stream, group, entry)
  redis.call('XDEL', stream, entry)
end
return reply
"""

REFRESH_SCRIPT = (
    _ENSURE_GROUP
    + r"""
-- KEYS: ids stream, jobs hash, then one outcome key per id.
-- ARGV: group, consumer, then (id, entry, api, deadline) per id this worker holds.
-- Reply per id: 'kept' (claim renewed: XCLAIM JUSTID), 'finished' (an outcome is
-- written), 'lost' (another worker holds it, or it was queued again), 'requeued' (Redis
-- had forgotten it, a restart without persistence: queued again, original deadline).
-- Then Redis's time.
local stream, jobs, group, me = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
ensure_group(stream, group)
local reply = {}
for i = 1, (#ARGV - 2) / 4 do
  local id, entry = ARGV[4 * i - 1], ARGV[4 * i]
  local api, deadline = ARGV[4 * i + 1], ARGV[4 * i + 2]
  if redis.call('EXISTS', KEYS[2 + i]) == 1 then
    redis.call('XACK', stream, group, entry)
    redis.call('XDEL', stream, entry)
    reply[i] = 'finished'
  else
    local pending = redis.call('XPENDING', stream, group, entry, entry, 1)
    if pending[1] and pending[1][2] == me then
      redis.call('XCLAIM', stream, group, me, 0, entry, 'JUSTID')
      reply[i] = 'kept'
    elseif pending[1] or redis.call('HEXISTS', jobs, id) == 1 then
      reply[i] = 'lost'
    else
      local new = redis.call('XADD', stream, '*', 'id', id, 'api', api, 'deadline', deadline)
      redis.call('HSET', jobs, id, new .. '|' .. deadline .. '|' .. api)
      reply[i] = 'requeued'
    end
  end
end
reply[#reply + 1] = string.format('%.6f', now_s())
return reply
"""
)

RELEASE_SCRIPT = r"""
-- KEYS: ids stream. ARGV: group, consumer, released consumer, idle ms, entries.
-- Hands this worker's entries to the released consumer, idle for longer than any
-- worker's claim time, so the next adoption by a live worker takes them at once.
-- Reply: how many were handed back.
local stream, group, me, released, idle = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local count = 0
for i = 5, #ARGV do
  local ok, pending = pcall(redis.call, 'XPENDING', stream, group, ARGV[i], ARGV[i], 1)
  if ok and pending[1] and pending[1][2] == me then
    redis.call('XCLAIM', stream, group, released, 0, ARGV[i], 'IDLE', idle, 'JUSTID')
    count = count + 1
  end
end
return count
"""
