-- Every change of a command's state goes through this script, so that each one is a
-- compare-and-set on an allowed edge, logged with its time, and mirrored into the
-- per-device sets and the recorder's stream in the same atomic step.
--
-- ARGV: 1 key prefix, 2 mode ("create" | "move" | "claim"), 3 command id, 4 now (ISO 8601),
--       5 detail, 6 expected states ("*" or comma list), 7 target states (comma list,
--       applied in order), 8 lease seconds ("" for none), 9 create only: JSON
--       {cap, device_key, queue?, message?, stamp?, state?, generation_key?, generation?}:
--       the device's queue cap and settings key, the broker list and Celery message to push
--       once the command is stored, whether to stamp created_at from Redis's clock, the
--       state a command restored from the ledger comes back in (queued by default), and the
--       token generation the submitting token was checked at ("" for none yet); claim only:
--       the claiming worker's device ("" for any), 10.. field/value pairs to store with the
--       change.
-- Returns {code, previous state, new state}: code 1 moved, 0 refused, -1 no such command,
-- -2 device queue full, -3 device not registered, -5 a token was revoked since the generation
-- the create names (all three create only), -4 the command is another device's (claim
-- only; the reply's fourth item names that device). A won claim
-- also returns the command's fields, so the worker needs no second round trip before it
-- talks to the device; a stamped create returns {'created_at', time}.

local prefix, mode, id, now_iso, detail = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local expected, targets, lease_s, extra = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local cmd_key = prefix .. ':cmd:' .. id
local log_key = cmd_key .. ':log'
-- Long-polls block here rather than on the log: it gets an entry only when the command may
-- have settled for them (responded or terminal), so a waiter wakes once, not per event.
local wake_key = cmd_key .. ':wake'
local transitions_key = prefix .. ':transitions'
local expiries_key = prefix .. ':expiries'
local leases_key = prefix .. ':leases'

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000

--ALLOWED--
--TERMINAL--
-- How long a finished command's live state stays in Redis; the SQL ledger keeps it forever.
local FINISHED_TTL_S = 86400

local function split(text)
  local out = {}
  for part in string.gmatch(text, '[^,]+') do table.insert(out, part) end
  return out
end

local function fields_from(start)
  local pairs_ = {}
  for i = start, #ARGV do table.insert(pairs_, ARGV[i]) end
  return pairs_
end

local function device_key(device, state)
  if state == 'queued' then return prefix .. ':dev:' .. device .. ':queued' end
  if state == 'dispatched' then return prefix .. ':dev:' .. device .. ':inflight' end
  if state == 'responded' then return prefix .. ':dev:' .. device .. ':responded' end
  return nil
end

local function leave(device, state)
  local key = device_key(device, state)
  if key then redis.call(state == 'queued' and 'ZREM' or 'SREM', key, id) end
  if state == 'queued' then redis.call('ZREM', expiries_key, id) end
  if state == 'dispatched' then redis.call('ZREM', leases_key, id) end
end

local function enter(device, state)
  local key = device_key(device, state)
  if state == 'queued' then
    redis.call('ZADD', key, now, id)
  elseif key then
    redis.call('SADD', key, id)
  end
  if state == 'dispatched' and lease_s ~= '' then
    -- The worker ends the command by its own timeout; the lease adds a grace for the rest.
    local timeout_s = tonumber(redis.call('HGET', cmd_key, 'timeout_s')) or 0
    redis.call('ZADD', leases_key, now + timeout_s + tonumber(lease_s), id)
  end
  if TERMINAL[state] then
    redis.call('EXPIRE', cmd_key, FINISHED_TTL_S)
    redis.call('EXPIRE', log_key, FINISHED_TTL_S)
  end
end

-- Appends one event to the command's own log (which waiters block on) and to the
-- recorder's stream, with every field this change stored.
local function record(state, fields)
  local seq = redis.call('HINCRBY', cmd_key, 'seq', 1)
  redis.call('XADD', log_key, '*', 'seq', seq, 'state', state, 'at', now_iso, 'detail', detail)
  local entry = {'id', id, 'seq', seq, 'state', state, 'at', now_iso, 'detail', detail}
  for i = 1, #fields do table.insert(entry, fields[i]) end
  redis.call('XADD', transitions_key, '*', unpack(entry))
end

-- ISO 8601 UTC with microseconds, as the callers write times, from Unix seconds and micros.
local function iso_time(seconds, micros)
  -- Days to a civil date (H. Hinnant's days_from_civil, inverted).
  local days = math.floor(seconds / 86400)
  local of_day = seconds - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local day = doy - math.floor((153 * mp + 2) / 5) + 1
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400 + (month <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%06dZ', year, month, day,
    math.floor(of_day / 3600), math.floor(of_day % 3600 / 60), of_day % 60, micros)
end

-- created_at from Redis's clock, in the same atomic step that queues the message: the order
-- of creation times is the order commands reach their queues, hence the order they run in.
-- Strictly increasing, so no two commands share one even within a microsecond.
local function creation_stamp()
  local clock_key = prefix .. ':created_clock'
  local micros = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local last = tonumber(redis.call('GET', clock_key) or '0')
  if micros <= last then micros = last + 1 end
  redis.call('SET', clock_key, string.format('%.0f', micros))
  local seconds = math.floor(micros / 1000000)
  return iso_time(seconds, micros - seconds * 1000000)
end

if mode == 'create' then
  local fields = fields_from(10)
  local device = nil
  for i = 1, #fields, 2 do
    if fields[i] == 'device' then device = fields[i + 1] end
  end
  if redis.call('EXISTS', cmd_key) == 1 then
    -- Sent again after its first reply was lost: it is there already, and stays as it is.
    local created_at = redis.call('HGET', cmd_key, 'created_at') or ''
    return {0, redis.call('HGET', cmd_key, 'state'), '', {'created_at', created_at}}
  end
  local options = cjson.decode(extra)
  -- A submission whose token was checked against a cached lookup: no token may have been
  -- revoked since that lookup, or the token is checked again first.
  if options.generation_key and
      (redis.call('GET', options.generation_key) or '') ~= options.generation then
    return {-5, '', ''}
  end
  if redis.call('EXISTS', options.device_key) == 0 then return {-3, '', ''} end
  if redis.call('ZCARD', device_key(device, 'queued')) >= options.cap then return {-2, '', ''} end
  local initial = options.state or 'queued'
  redis.call('HSET', cmd_key, 'state', initial, 'seq', 0, unpack(fields))
  if initial == 'responded' then
    -- A reply awaiting analysis, restored from the ledger after Redis lost it.
    enter(device, 'responded')
    record('responded', {'state', 'responded'})
    redis.call('XADD', wake_key, 'MAXLEN', '4', '*', 'state', 'responded')
    return {1, '', 'responded'}
  end
  local expires_s = redis.call('HGET', cmd_key, 'expires_s')
  if expires_s and expires_s ~= '' then
    local deadline = now + tonumber(expires_s)
    redis.call('HSET', cmd_key, 'expires_at', deadline)
    redis.call('ZADD', expiries_key, deadline, id)
  end
  enter(device, 'queued')
  -- The API committed the ledger row with every field before this ran: the recorder needs
  -- only the event, and created_at when it is stamped here.
  local recorded = {'state', 'queued'}
  local created_at = nil
  if options.stamp then
    created_at = creation_stamp()
    redis.call('HSET', cmd_key, 'created_at', created_at)
    table.insert(recorded, 'created_at'); table.insert(recorded, created_at)
  end
  record('queued', recorded)
  if options.queue then redis.call('LPUSH', options.queue, options.message) end
  if created_at then return {1, '', 'queued', {'created_at', created_at}} end
  return {1, '', 'queued'}
end

local state = redis.call('HGET', cmd_key, 'state')
if not state then return {-1, '', ''} end
local device = redis.call('HGET', cmd_key, 'device')

-- Mode "note" logs an event (ARGV 5 its detail) that changes nothing, such as a reply that
-- came after its command had ended, in whatever state the command is, terminal ones too.
if mode == 'note' then
  record(state, {})
  return {1, state, state}
end

local wanted = split(targets)
if mode == 'claim' then
  -- A worker runs its own device's commands only, whatever queue the message came from.
  if extra ~= '' and extra ~= device then return {-4, state, state, device or ''} end
  local deadline = redis.call('HGET', cmd_key, 'expires_at')
  if state == 'queued' and redis.call('HGET', cmd_key, 'cancel') == '1' then
    wanted = {'cancelled'}
    detail = 'cancelled by request'
  elseif state == 'queued' and deadline and deadline ~= '' and now > tonumber(deadline) then
    wanted = {'expired'}
    detail = 'expired before dispatch'
  else
    wanted = {'dispatched'}
  end
elseif expected ~= '*' then
  local ok = false
  for _, s in ipairs(split(expected)) do if s == state then ok = true end end
  if not ok then return {0, state, state} end
end

local fields = fields_from(10)
local previous = state
for step, target in ipairs(wanted) do
  if not (ALLOWED[state] and ALLOWED[state][target]) then
    if step == 1 then return {0, previous, state} end
    break
  end
  leave(device, state)
  local stored = {'state', target}
  if step == 1 then
    for i = 1, #fields do table.insert(stored, fields[i]) end
  end
  if target == 'dispatched' then
    -- attempts counts the deliveries that won the claim, so a retry shows as attempt 2.
    redis.call('HINCRBY', cmd_key, 'attempts', 1)
    table.insert(stored, 'dispatched_at'); table.insert(stored, now_iso)
    table.insert(stored, 'attempts'); table.insert(stored, redis.call('HGET', cmd_key, 'attempts'))
  elseif target == 'responded' then
    table.insert(stored, 'responded_at'); table.insert(stored, now_iso)
  end
  if TERMINAL[target] then
    table.insert(stored, 'finished_at'); table.insert(stored, now_iso)
  end
  redis.call('HSET', cmd_key, unpack(stored))
  enter(device, target)
  record(target, stored)
  state = target
end
if state == previous then return {0, previous, state} end
if TERMINAL[state] or state == 'responded' then
  redis.call('XADD', wake_key, 'MAXLEN', '4', '*', 'state', state)
  redis.call('EXPIRE', wake_key, FINISHED_TTL_S)
end
if mode == 'claim' and state == 'dispatched' then
  return {1, previous, state, redis.call('HGETALL', cmd_key)}
end
return {1, previous, state}
