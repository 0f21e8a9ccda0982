"""Lua scripts of the Redis backend. Each mirrors a function of ``_logic.py`` or ``memory.py``.

Numbers leave Lua as strings formatted with ``%.17g``: Redis would truncate a Lua number to an
integer, and Lua's ``tostring`` keeps only 14 digits (100 microseconds of a Unix time).
"""

from __future__ import annotations

INCR = """
local existed = redis.call('EXISTS', KEYS[1])
local value = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if existed == 0 and tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return value
"""

EWMA = """
local old = tonumber(redis.call('GET', KEYS[1]))
local value, alpha = tonumber(ARGV[1]), tonumber(ARGV[2])
if old then value = alpha * value + (1 - alpha) * old end
local text = string.format('%.17g', value)
redis.call('SET', KEYS[1], text)
return text
"""

# ARGV: rate_per_s, burst, cost, now, force. Returns {allowed, retry_after, remaining}.
GCRA = """
local rate, burst, cost, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local interval = 1 / rate
local tat = tonumber(redis.call('GET', KEYS[1]))
if (not tat) or tat < now then tat = now end
local new_tat = tat + cost * interval
local allow_at = new_tat - burst * interval
if ARGV[5] == '1' or now + 1e-6 >= allow_at then
  redis.call('SET', KEYS[1], string.format('%.17g', new_tat), 'PX',
             math.ceil((math.max(new_tat - now, 0) + 1) * 1000))
  return {1, '0', math.max(0, math.floor(burst - (new_tat - now) * rate + 1e-3))}
end
local retry = 'inf'
if cost <= burst then retry = string.format('%.17g', allow_at - now) end
return {0, retry, math.max(0, math.floor(burst - (tat - now) * rate + 1e-3))}
"""

# Budget window keys: KEYS = {totals hash, live hash id->amount, expiry zset id->time, settled set}.
_OPEN_WINDOW = """
local totals, live, expiry, settled = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local function open_window(window_end, now)
  local current = tonumber(redis.call('HGET', totals, 'window_end'))
  if (not current) or current <= now then
    redis.call('DEL', totals, live, expiry, settled)
    redis.call('HSET', totals, 'used', 0, 'reserved', 0, 'window_end', string.format('%.17g', window_end))
  end
end
-- Every key of the window lives until the window ends (plus a minute for late settlements).
local function with_expiry(window_end, now, result)
  local ttl = math.ceil((window_end - now) * 1000) + 60000
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
  return result
end
local function drop(id)
  local amount = tonumber(redis.call('HGET', live, id))
  if not amount then return false end
  redis.call('HINCRBY', totals, 'reserved', 0 - amount)  -- not -amount: Lua's -0 becomes "-0"
  redis.call('HDEL', live, id)
  redis.call('ZREM', expiry, id)
  return true
end
"""

# ARGV: limit, amount, reservation_id, lease_s, window_end, now. Returns {granted, used, reserved, reclaimed}.
RESERVE = (
    _OPEN_WINDOW
    + """
local limit, amount, id = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local lease, window_end, now = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local function reserve()
  open_window(window_end, now)
  local expired = redis.call('ZRANGEBYSCORE', expiry, '-inf', ARGV[6])
  for _, old in ipairs(expired) do drop(old) end
  local used = tonumber(redis.call('HGET', totals, 'used'))
  local reserved = tonumber(redis.call('HGET', totals, 'reserved'))
  if redis.call('HEXISTS', live, id) == 1 or redis.call('SISMEMBER', settled, id) == 1 then
    return {1, used, reserved, #expired}
  end
  if used + reserved + amount > limit then return {0, used, reserved, #expired} end
  redis.call('HSET', live, id, amount)
  redis.call('ZADD', expiry, string.format('%.17g', now + lease), id)
  return {1, used, redis.call('HINCRBY', totals, 'reserved', amount), #expired}
end
return with_expiry(window_end, now, reserve())
"""
)

# ARGV: reservation_id, actual, window_end, now. Returns 1 if settled now, 0 if already settled.
SETTLE = (
    _OPEN_WINDOW
    + """
local window_end, now = tonumber(ARGV[3]), tonumber(ARGV[4])
open_window(window_end, now)
if redis.call('SADD', settled, ARGV[1]) == 0 then return 0 end
drop(ARGV[1])
redis.call('HINCRBY', totals, 'used', ARGV[2])
return with_expiry(window_end, now, 1)
"""
)

# ARGV: reservation_id. Returns 1 if a live reservation was dropped.
RELEASE = (
    _OPEN_WINDOW
    + """
if drop(ARGV[1]) then return 1 end
return 0
"""
)

# ARGV: reservation_id, lease_s, now. Returns 1 if a live, unexpired reservation's lease was extended.
RENEW = """
local live, expiry = KEYS[2], KEYS[3]
local current = tonumber(redis.call('ZSCORE', expiry, ARGV[1]))
if (not current) or current <= tonumber(ARGV[3]) or redis.call('HEXISTS', live, ARGV[1]) == 0 then return 0 end
redis.call('ZADD', expiry, string.format('%.17g', tonumber(ARGV[3]) + tonumber(ARGV[2])), ARGV[1])
return 1
"""

# ARGV: now. Returns {used, reserved counting only unexpired leases}.
USAGE = """
local totals, live, expiry = KEYS[1], KEYS[2], KEYS[3]
local window_end = tonumber(redis.call('HGET', totals, 'window_end'))
if (not window_end) or window_end <= tonumber(ARGV[1]) then return {0, 0} end
local reserved = tonumber(redis.call('HGET', totals, 'reserved'))
for _, id in ipairs(redis.call('ZRANGEBYSCORE', expiry, '-inf', ARGV[1])) do
  reserved = reserved - (tonumber(redis.call('HGET', live, id)) or 0)
end
return {tonumber(redis.call('HGET', totals, 'used')), reserved}
"""

_BREAKER = """
local key = KEYS[1]
local s = {status = 'closed', calls = 0, failures = 0, window_start = 0, retry_at = 0, cooldown = 0, probes_ok = 0}
local stored = redis.call('HGETALL', key)
for i = 1, #stored, 2 do
  s[stored[i]] = tonumber(stored[i + 1]) or stored[i + 1]
end
local function save(allowed)
  redis.call('HSET', key, 'status', s.status, 'calls', s.calls, 'failures', s.failures,
    'window_start', string.format('%.17g', s.window_start), 'retry_at', string.format('%.17g', s.retry_at),
    'cooldown', string.format('%.17g', s.cooldown), 'probes_ok', s.probes_ok)
  local retry_at = '0'
  if s.status ~= 'closed' then retry_at = string.format('%.17g', s.retry_at) end
  return {s.status, allowed, s.calls, s.failures, retry_at}
end
"""

# ARGV: now.
BREAKER_ALLOW = (
    _BREAKER
    + """
local now = tonumber(ARGV[1])
if s.status == 'closed' then return save(1) end
if now >= s.retry_at then
  s.status = 'half_open'
  s.retry_at = now + s.cooldown
  return save(1)
end
return save(0)
"""
)

# ARGV: ok, now, window_s, min_calls, error_rate, cooldown_s, probes (successes in a row that close it).
BREAKER_RECORD = (
    _BREAKER
    + """
local ok, now, window = ARGV[1] == '1', tonumber(ARGV[2]), tonumber(ARGV[3])
local min_calls, rate, cooldown = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local probes = tonumber(ARGV[7]) or 1
if s.status == 'open' then return save(0) end
if s.status == 'half_open' then
  if ok then
    s.probes_ok = (tonumber(s.probes_ok) or 0) + 1
    if s.probes_ok >= probes then
      s.status, s.calls, s.failures, s.window_start, s.retry_at, s.probes_ok = 'closed', 0, 0, now, 0, 0
    else
      s.retry_at = now
    end
    return save(1)
  end
  s.calls, s.failures, s.probes_ok = 0, 0, 0
  s.status, s.retry_at, s.cooldown = 'open', now + cooldown, cooldown
  return save(0)
end
if now - s.window_start >= window then s.calls, s.failures, s.window_start = 0, 0, now end
s.calls = s.calls + 1
if not ok then s.failures = s.failures + 1 end
if s.calls >= min_calls and s.failures >= rate * s.calls then
  s.status, s.retry_at, s.cooldown = 'open', now + cooldown, cooldown
  return save(0)
end
return save(1)
"""
)

# KEYS: records hash id->json, index zset id->ts. ARGV: id1, ts1, json1, id2, ...
APPEND_USAGE = """
for i = 1, #ARGV, 3 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 2]) == 1 then
    redis.call('ZADD', KEYS[2], ARGV[i + 1], ARGV[i])
  end
end
return 0
"""

# KEYS: records hash, index zset. ARGV: cutoff, batch. Deletes up to `batch` records with ts < cutoff
# (one batch per call, so that a large purge never blocks the server for long).
PRUNE_USAGE = """
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #old == 0 then return 0 end
redis.call('HDEL', KEYS[1], unpack(old))
redis.call('ZREM', KEYS[2], unpack(old))
return #old
"""


def fmt(value: float) -> str:
    """A float as the scripts read it back exactly."""
    return repr(float(value))


def breaker_record_args(
    ok: bool, now: float, window_s: float, min_calls: int, error_rate: float, cooldown_s: float, probes: int
) -> list[object]:
    """``BREAKER_RECORD``'s ARGV, for the blocking and the asyncio Redis backends alike."""
    return ["1" if ok else "0", fmt(now), fmt(window_s), min_calls, fmt(error_rate), fmt(cooldown_s), probes]
