-- feedback.lua - records one member event into the feature hash.
--
-- Embedded in notifd at build time as redis_script_feedback
-- (src/store/redis_scripts.c, src/store/lua/embed.cmake); loaded with SCRIPT LOAD on
-- every (re)connect. Its arguments are built by feedback_send() in
-- src/fast/feedback.c, in this order (P is redis.prefix, M the member id):
--
--   KEYS[1]  P member:{M}: the member hash (decayed feature counts)
--   KEYS[2]  P optout:{M}: the member's opt-outs (no TTL: an unsubscribe
--            holds until a resubscribe, however long the member is quiet)
--   KEYS[3]  (optional) P evt:{M}:<id>: the event id's key
--   ARGV[1]  ts: the event's time, s
--   ARGV[2]  channel ('' when none)
--   ARGV[3]  event: delivered, open, click, dismiss, unsubscribe,
--            resubscribe or visit
--   ARGV[4]  half-life, s
--   ARGV[5]  attribution window, s
--   ARGV[6]  member-hash TTL, s
--   ARGV[7]  tz_offset_min ('' keep)
--   ARGV[8]  how long an event id is remembered, s (with KEYS[3])
--
-- An event whose id was recorded within ARGV[8] changes nothing: -1.
-- A visit within the attribution window after the member's latest open (any
-- channel) counts as attributed (visit_attr), any other as organic
-- (visit_org): the estimator compares the two to find what messages add.
-- Returns 1 when this was the member's first event (the caller then adds the
-- member to the planner's schedule), else 0.
--
-- Scripts exist where several keys must change together or a read-then-write
-- must be atomic. Everything a script touches belongs to one member (keys
-- share the member's hash slot).
--
-- Member feature counts decay exponentially (features.half_life_days). The
-- hash keeps every count as of `updated_at`, and an event at time ts is
-- added with weight 2^((ts - updated_at)/half_life): in updated_at's units,
-- so no other field has to be rewritten (a late event gets a weight below
-- 1). Only when that weight would pass 2 (a half-life since updated_at) are
-- all counts brought to ts and updated_at moved, which keeps the numbers
-- small and costs one HGETALL per member and half-life instead of per write.
-- The C reader (features.c) decays from updated_at to "now", so both give
-- every event the weight 2^(-(now - ts)/half_life).
--
-- The helpers stored_time, stored_count, is_count, rescale and from_future
-- are the same text as in decide_record.lua (Redis scripts cannot share
-- code; tests/integration/test_lua_scripts.py checks the copies agree).

-- A member-hash time or decayed count as notifd's C readers take it
-- (stored_fields.h): a time outside 0..1e11 is missing (nil), a count
-- outside 0..1e12 is 0. The scripts must agree with them, or a value decide
-- ignores would still steer (or, not being a number, fail) every write.
local function stored_time(v)
  local n = tonumber(v or '')
  if n == nil or not (n >= 0 and n <= 1e11) then return nil end
  return n
end
local function stored_count(v)
  local n = tonumber(v or '')
  if n == nil or not (n >= 0 and n <= 1e12) then return 0 end
  return n
end
-- rescale(key, at, f): every count of a member hash times f, and
-- updated_at set to at (the counts are then as of at).
local function is_count(field)
  if field == 'visit_org' or field == 'visit_attr' then return true end
  if string.sub(field, 1, 5) == 'last_' or string.find(field, '_last_', 1, true) then
    return false
  end
  return (string.match(field, '_sent$') or string.match(field, '_delivered$') or
          string.match(field, '_open$') or string.match(field, '_click$') or
          string.match(field, '_dismiss$') or string.match(field, '_unsub_n$')) ~= nil
end
local function rescale(key, at, f)
  local all = redis.call('HGETALL', key)
  local args = {'updated_at', at}
  for i = 1, #all, 2 do
    if is_count(all[i]) then
      local v = tonumber(all[i + 1])
      if v then args[#args + 1] = all[i]; args[#args + 1] = string.format('%.9g', v * f) end
    end
  end
  redis.call('HSET', key, unpack(args))
end
-- from_future(t, at, half_life): a stored time t more than 16 half-lives
-- after the event's time `at` (its ts). Requests' ts stay within limits.ts_window_s of the wall
-- clock, so such a time was written in another era (a bad clock, a test, a
-- hostile writer). Taken at its word it would erase the present: every
-- count rescaled to almost nothing, every new event added with a weight of
-- almost nothing, a "latest" time never passed again. So the present wins:
-- the stored time is replaced by ts.
local function from_future(t, at, half_life)
  return t > at + 16 * half_life
end
-- decay(key, ts, hl): the weight of an event at ts in the hash's counts
-- (1 after bringing them to ts); add() and set_max() write one field.
local function decay(key, ts, hl)
  local upd = stored_time(redis.call('HGET', key, 'updated_at'))
  if upd == nil then
    redis.call('HSET', key, 'updated_at', ts)
    redis.call('HSETNX', key, 'first_seen', ts)
    return 1
  end
  if from_future(upd, ts, hl) then
    redis.call('HSET', key, 'updated_at', ts)
    return 1
  end
  local w = math.pow(2, (ts - upd) / hl)
  if w <= 2 then return w end
  rescale(key, ts, 1 / w)
  return 1
end
local function add(key, field, w)
  local wt = string.format('%.9g', w)
  local r = redis.pcall('HINCRBYFLOAT', key, field, wt)
  if type(r) ~= 'string' or stored_count(r) ~= tonumber(r) then
    -- it was no count: start from this event
    redis.call('HSET', key, field, wt)
  end
end
local function set_max(key, field, ts, hl)
  local old = stored_time(redis.call('HGET', key, field))
  if old == nil or ts > old or from_future(old, ts, hl) then
    redis.call('HSET', key, field, ts)
  end
end
if #KEYS > 2 and not redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[8]) then
  return -1
end
local key = KEYS[1]
local ts = tonumber(ARGV[1])
local ch = ARGV[2]
local ev = ARGV[3]
local is_new = redis.call('HEXISTS', key, 'updated_at') == 0
local hl = tonumber(ARGV[4])
local wt = decay(key, ts, hl)
if ev == 'delivered' then add(key, ch .. '_delivered', wt)
elseif ev == 'open' or ev == 'click' then
  add(key, ch .. (ev == 'open' and '_open' or '_click'), wt)
  set_max(key, ch .. '_last_open', ts, hl)
  set_max(key, 'last_open', ts, hl)
elseif ev == 'dismiss' then add(key, ch .. '_dismiss', wt)
elseif ev == 'unsubscribe' then
  redis.call('HSET', key, ch .. '_unsub', 1)
  redis.call('HSET', KEYS[2], ch, 1)
  add(key, ch .. '_unsub_n', wt)
elseif ev == 'resubscribe' then
  redis.call('HSET', key, ch .. '_unsub', 0)
  redis.call('HDEL', KEYS[2], ch)
elseif ev == 'visit' then
  local lo = tonumber(redis.call('HGET', key, 'last_open') or '')
  if lo ~= nil and ts >= lo and ts - lo <= tonumber(ARGV[5]) then
    add(key, 'visit_attr', wt)
  else
    add(key, 'visit_org', wt)
  end
  set_max(key, 'last_visit', ts, hl)
end
if ARGV[7] ~= '' then redis.call('HSET', key, 'tz_offset_min', ARGV[7]) end
redis.call('EXPIRE', key, ARGV[6])
if is_new then return 1 end
return 0
