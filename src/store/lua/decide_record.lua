-- decide_record.lua - records one decision to send, atomically.
--
-- Embedded in notifd at build time as redis_script_decide_record
-- (src/store/redis_scripts.c, src/store/lua/embed.cmake); loaded with SCRIPT LOAD on
-- every (re)connect. Its arguments are built by decide_send_record() in
-- src/fast/decide_record.c, in this order (P is redis.prefix, M the member id,
-- <ch> the channel's name, <week> the week number):
--
--   KEYS[1]   P idem:{M}:<opportunity>: the opportunity's stored answer
--   KEYS[2]   P week:{M}: the week hash (weekly counters, EWMA, scores)
--   KEYS[3]   P sent:{M}: the sent set (message id -> send time)
--   KEYS[4]   P member:{M}: the member hash (decayed feature counts)
--   KEYS[5]   P optout:{M}: the durable opt-outs (channel -> 1)
--   KEYS[6 ..]  the global rate limiters of this send, only when ARGV[18]
--             is not '': P limit:<ch>, P limit:<ch>:<tag> (not the member's:
--             in a Redis Cluster they would live in other slots)
--   ARGV[1]   ts: the decision's time, s
--   ARGV[2]   "<ch>:<week>:sent": the week-hash field of the channel's
--             sends this week ('' for a send outside the plan, a
--             transactional message: it counts in no week, and its cap
--             (ARGV[4]) is -1 and its send-times field (ARGV[13]) '')
--   ARGV[3]   "<ch>:<week>:opp": the field counting its opportunities this
--             week ('' when this one does not count)
--   ARGV[4]   the weekly cap (-1: none)
--   ARGV[5]   the chosen message id
--   ARGV[6]   idempotency TTL, s
--   ARGV[7]   dedup window, s (0: no dedup, no sent set)
--   ARGV[8]   the response as decided
--   ARGV[9]   the response if a cap stops the send
--   ARGV[10]  half-life, s
--   ARGV[11]  week-hash TTL, s
--   ARGV[12]  member-hash TTL, s
--   ARGV[13]  "<ch>:sends": week-hash field of the channel's send times
--             ('' none)
--   ARGV[14]  the cap over any 7 days (-1: keep the times, check nothing)
--   ARGV[15]  "<ch>_sent": member-hash field of the channel's decayed sends
--   ARGV[16]  "<ch>_last_sent": member-hash field of its last send time
--   ARGV[17]  <ch>: the channel's name (its field in the opt-out hash; ''
--             for a transactional message that goes despite an opt-out)
--   ARGV[18]  the global rate limits of this send ('' none): see "Global
--             rate limits" below
--   ARGV[19]  the response if a rate limit stops the send, up to its
--             "retry_at": (the script appends the time and the '}')
--   ARGV[20]  n: how many week-hash fields follow to delete (stale weeks)
--   ARGV[21 .. 20+n]   those n fields
--   ARGV[21+n ..]      field/value pairs to set in the week hash (the EWMA,
--             the recent-scores list, the first week: values notifd
--             computed from what it read)
--
-- The same positions by name, the one list C and Lua share: embed.cmake
-- turns these lines (an "@argv" line continues the one before) into DECIDE_RECORD_KEY_* and DECIDE_RECORD_ARGV_*
-- for the builder, which checks every argument's position against them.
-- @keys idem week sent member optout limiter
-- @argv ts sent_field opp_field cap message idem_ttl dedup_s answer
-- @argv capped_answer half_life_s week_ttl member_ttl sends_field
-- @argv rolling_cap member_sent_field member_last_field channel
-- @argv limits limited_answer n_stale
--
-- The 7-day cap (ARGV[13], ARGV[14]): the send is stopped if the stored
-- times within 7 days of ts already reach it, and if it happens, ts is put
-- first in the field with the stored times still within 7 days (at most
-- DECISION_MAX_RECENT_SENDS in all). Checked here, not only from notifd's
-- read, so two instances deciding for one member at once cannot both pass
-- it. Two numbers below are C constants of include/notifd/core/decision.h,
-- written out as the C macros expand (tests/unit/test_lua_scripts.c checks
-- them): (7 * 86400) is DECISION_ROLLING_WINDOW_S and 32 is
-- DECISION_MAX_RECENT_SENDS.
--
-- Returns {'dup', stored response} when the opportunity was decided before
-- (nothing else is touched); {'sent_already'} when the message was sent to
-- the member within the dedup window since notifd read the sent set
-- (nothing is touched: notifd decides again without it); {'unsubscribed'}
-- when the member opted out of the channel since notifd read (or cached)
-- its state (nothing is touched: notifd reads again and decides); else
-- {'cap', v} (a cap stopped the send), {'rate_limited', v, codes, answer}
-- (a global rate limit stopped it) or {'sent', v[, codes]}, v the week hash's
-- version after this record (every record adds one to it, so a notifd
-- that expected v - 1 before knows nobody else wrote in between; see
-- src/core/member_cache.h). Decisions not to send are recorded by plain
-- commands (src/fast/decide_skip.c).
--
-- Redis charges a script per redis.call (~8,700 instructions each), per
-- argument (~1,100) and per number converted (tonumber is strtod, a number
-- passed on is printed with %.14g: 1,300-2,000 each). So the week hash is
-- read with one HMGET and written with one HSET (the counts incremented
-- here, inside the script, so still atomically), the member hash likewise,
-- field names come ready-made and ts is passed on as the string it came
-- as: ten calls where the feedback script's helpers would take seventeen.
-- A send still costs Redis ~190k instructions here (docs/benchmarks.md),
-- seven Lua-cap calls; the helpers' version cost 194k. The week hash's
-- TTL is renewed with the first counted opportunity of a week (and on any
-- decide that counts none), not on every decide: it then lives at least
-- two weeks past the member's last decide.
--
-- The helpers stored_time, stored_count, from_future, is_count and rescale
-- are the same text as in feedback.lua (Redis scripts cannot share code;
-- tests/integration/test_lua_scripts.py checks the copies agree).

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
-- A week counter as decide read it (stored_fields.h: an integer in
-- 0..1e9); anything else is missing, 0, so the cap checked here is the
-- one decided on.
local function counter(v)
  local n = tonumber(v or '0')
  if n == nil or n < 0 or n > 1e9 or n ~= math.floor(n) then return 0 end
  return n
end
local ts = tonumber(ARGV[1])
-- Dedup, re-checked here: another instance may have sent this message
-- to the member since notifd read the sent set. A retry of this very
-- opportunity gets its stored answer (it sent the message): the stored
-- answer is looked for only then, or before an early return or a write
-- the SET NX GET below comes too late for, so a send that goes costs one
-- call less.
local window = tonumber(ARGV[7])
if window > 0 then
  -- A score no send can have (stored_time: outside 0..1e11) is no send,
  -- as decide's read takes it (stored_read_sent_time).
  local last = stored_time(redis.call('ZSCORE', KEYS[3], ARGV[5]))
  if last and last > ts - window then
    local prev = redis.call('GET', KEYS[1])
    if prev then return {'dup', prev} end
    return {'sent_already'}
  end
end
-- The durable opt-out, re-checked here for the same reason: an opt-out
-- holds from the moment it is stored, whatever notifd's view was.
if tonumber(redis.call('HGET', KEYS[5], ARGV[17]) or '') == 1 then
  local prev = redis.call('GET', KEYS[1])
  if prev then return {'dup', prev} end
  return {'unsubscribed'}
end
local sentf, oppf, sendsf = ARGV[2], ARGV[3], ARGV[13]
local wk = redis.call('HMGET', KEYS[2], sentf, sendsf ~= '' and sendsf or sentf,
                      oppf ~= '' and oppf or sentf, 'v')
local sent = counter(wk[1])
local outcome, resp, sends = 'sent', ARGV[8], nil
local cap = tonumber(ARGV[4])
if cap >= 0 and sent >= cap then
  outcome, resp = 'cap', ARGV[9]
elseif sendsf ~= '' then
  local n = 0
  sends = {ARGV[1]}
  for t in string.gmatch(wk[2] or '', '[^,]+') do
    local x = tonumber(t)
    -- (7 * 86400): DECISION_ROLLING_WINDOW_S; 32: DECISION_MAX_RECENT_SENDS
    if x and x > ts - (7 * 86400) and x < ts + (7 * 86400) then
      n = n + 1
      if #sends < 32 then sends[#sends + 1] = t end
    end
  end
  local rcap = tonumber(ARGV[14])
  if rcap >= 0 and n >= rcap then outcome, resp = 'cap', ARGV[9] end
end

-- ---- Global rate limits (README "Global rate limits") -------------------
-- A send the caps let through meets the limiters of its channel and of its
-- message's tags (KEYS[6 ..]), shared by every notifd instance: a GCRA on
-- Redis's clock (TIME, in us), never the request's ts, which producers set
-- and need not keep in order. ARGV[18] is "<on_error> T b s ..." with
-- on_error 'open' or 'closed', then per limiter its emission interval T
-- (us: 1e6 / per_second), its burst b and s 1 for shadow. A limiter key
-- holds the theoretical arrival time (TAT, us). A send conforms when
-- max(TAT, now) + T - b * T <= now: b sends at once after idle, then one
-- per T. A send stopped by any enforced limiter advances none of them; a
-- shadow limiter never stops one, and advances only when it conforms, so
-- what it counts is what enforcing it would stop. Everything read is
-- treated as hostile: a value that is no TAT (not a number, negative, or
-- further ahead than any TAT can be) is reset; a key that cannot be read
-- or written (another type, OOM) fails open or closed per on_error. One
-- letter per limiter comes back: a allowed, r allowed after a reset,
-- l limited, s would be limited (shadow), o / c error failed open / closed.
local limited
if outcome == 'sent' and ARGV[18] ~= '' then
  local prev = redis.call('GET', KEYS[1])
  if prev then return {'dup', prev} end
  local spec = {}
  for w in string.gmatch(ARGV[18], '%S+') do spec[#spec + 1] = w end
  local closed = spec[1] == 'closed'
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) * 1e6 + tonumber(clock[2])
  local codes, tats, retry = {}, {}, nil
  local function stop(at) if retry == nil or at > retry then retry = at end end
  for i = 1, #KEYS - 5 do
    local T, b, shadow = tonumber(spec[3 * i - 1]), tonumber(spec[3 * i]), spec[3 * i + 1] == '1'
    local v = redis.pcall('GET', KEYS[5 + i])
    if type(v) == 'table' then
      codes[i] = closed and 'c' or 'o'
      if closed and not shadow then stop(now + 1e6) end
    else
      local tat = tonumber(v or '')
      codes[i] = 'a'
      if v and not (tat and tat >= 0 and tat <= now + 2 * b * T + 6e7) then
        tat, codes[i] = nil, 'r'
      end
      if tat == nil or tat < now then tat = now end
      local allow_at = tat + T - b * T
      if allow_at > now then
        codes[i] = shadow and 's' or 'l'
        if not shadow then stop(allow_at) end
      else
        tats[i] = tat + T
      end
    end
  end
  if retry == nil then
    for i = 1, #KEYS - 5 do
      if tats[i] then
        local ok = redis.pcall('SET', KEYS[5 + i], string.format('%.0f', tats[i]), 'PX',
                               string.format('%.0f', math.ceil((tats[i] - now) / 1000) + 1000))
        if type(ok) == 'table' and ok.err then
          codes[i] = closed and 'c' or 'o'
          if closed and spec[3 * i + 1] ~= '1' then stop(now + 1e6) end
        end
      end
    end
  end
  if retry ~= nil then
    outcome = 'rate_limited'
    resp = ARGV[19] .. string.format('%.0f', math.ceil(retry / 1e6)) .. '}'
  end
  limited = table.concat(codes)
end
local prev = redis.call('SET', KEYS[1], resp, 'NX', 'GET', 'EX', ARGV[6])
if prev then return {'dup', prev} end
local version = counter(wk[4]) + 1
if version > 1e9 then version = 1 end
local set, opps = {'v', version}, 0
if oppf ~= '' then
  opps = counter(wk[3]) + 1
  set[3], set[4] = oppf, opps
end
local ndel = tonumber(ARGV[20])
if ndel > 0 then redis.call('HDEL', KEYS[2], unpack(ARGV, 21, 20 + ndel)) end
for i = 21 + ndel, #ARGV do set[#set + 1] = ARGV[i] end
if outcome == 'sent' and sentf ~= '' then
  set[#set + 1] = sentf
  set[#set + 1] = sent + 1
  if sends then
    set[#set + 1] = sendsf
    set[#set + 1] = table.concat(sends, ',')
  end
end
redis.call('HSET', KEYS[2], unpack(set))
-- The sent set's and the member hash's TTLs are renewed, and the sent set
-- trimmed, with the channel's first send of a week (and with every send
-- outside the plan, which counts in no week), not with every send: two
-- calls fewer per send. The sent set then lives a week longer than the
-- dedup window, which keeps every send of the week at least the window.
local renew = sentf == '' or sent == 0
if outcome == 'sent' then
  if window > 0 then
    redis.call('ZADD', KEYS[3], ARGV[1], ARGV[5])
    if renew then
      redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (ts - window))
      redis.call('EXPIRE', KEYS[3], window + 7 * 86400)
    end
  end
  -- The member's decayed sends, as feedback's decay() and add() would
  -- leave them (see the top of feedback.lua).
  local m = redis.call('HMGET', KEYS[4], 'updated_at', ARGV[15], ARGV[16])
  local upd, n = stored_time(m[1]), stored_count(m[2])
  local hl = tonumber(ARGV[10])
  local w, mset = 1, {}
-- from_future(t, at, half_life): a stored time t more than 16 half-lives
-- after the event's time `at` (see feedback.lua).
local function from_future(t, at, half_life)
  return t > at + 16 * half_life
end
  if upd ~= nil and from_future(upd, ts, hl) then
    mset[1], mset[2] = 'updated_at', ARGV[1]
  elseif upd == nil then
    mset[1], mset[2] = 'updated_at', ARGV[1]
    redis.call('HSETNX', KEYS[4], 'first_seen', ARGV[1])
  else
    w = math.pow(2, (ts - upd) / hl)
    if w > 2 then
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
      local f = 1 / w
      rescale(KEYS[4], ts, f)
      n = tonumber(string.format('%.9g', n * f))
      w = 1
    end
  end
  mset[#mset + 1] = ARGV[15]
  mset[#mset + 1] = string.format('%.17g', n + tonumber(string.format('%.9g', w)))
  local last = stored_time(m[3])
  if last == nil or ts > last or from_future(last, ts, hl) then
    mset[#mset + 1] = ARGV[16]
    mset[#mset + 1] = ARGV[1]
  end
  redis.call('HSET', KEYS[4], unpack(mset))
  if renew then redis.call('EXPIRE', KEYS[4], ARGV[12]) end
end
local limited_answer = outcome == 'rate_limited' and resp or nil
if opps ~= 1 and opps ~= 0 then return {outcome, version, limited, limited_answer} end
redis.call('EXPIRE', KEYS[2], ARGV[11])
return {outcome, version, limited, limited_answer}
