-- decide_skip.lua - records one decision not to send, atomically.
--
-- Embedded in notifd at build time as redis_script_decide_skip
-- (src/store/redis_scripts.c, src/store/lua/embed.cmake); loaded with SCRIPT LOAD on
-- every (re)connect. Its arguments are built by decide_send_record() in
-- src/fast/decide_record.c, in this order (P is redis.prefix, M the member id,
-- <ch> the channel's name, <week> the week number):
--
--   KEYS[1]  P idem:{M}:<opportunity>: the opportunity's stored answer
--   KEYS[2]  P week:{M}: the week hash
--   ARGV[1]  the response
--   ARGV[2]  idempotency TTL, s
--   ARGV[3]  "<ch>:<week>:opp": the week-hash field counting the channel's
--            opportunities this week ('' when this one does not count)
--   ARGV[4]  week-hash TTL, s
--   ARGV[5]  n: how many week-hash fields follow to delete (stale weeks)
--   ARGV[6 .. 5+n]  those n fields
--   ARGV[6+n ..]    field/value pairs to set in the week hash
--
-- The same positions by name (embed.cmake makes DECIDE_SKIP_KEY_* and
-- DECIDE_SKIP_ARGV_* of them for the builder):
-- @keys idem week
-- @argv answer idem_ttl opp_field week_ttl n_stale
--
-- Returns {'dup', stored response}, or {'skip', v}: v is the week hash's
-- version after this record (every record adds one to it, so a notifd
-- that expected v - 1 before knows nobody else wrote in between; see
-- src/core/member_cache.h).
--
-- Most decisions are not to send, and Redis charges a script for every
-- argument and every redis.call (each is interned into Lua, put in a table
-- and collected again): this one takes 9 arguments where decide_record
-- takes 21 and more, which cut Redis's instructions per such decide by
-- about a seventh (docs/benchmarks.md).

-- A week counter as decide reads it (stored_fields.h: an integer in
-- 0..1e9); anything else starts again from 0 rather than failing every
-- decide of the member. The same text as in decide_record.lua.
local function counter(v)
  local n = tonumber(v or '0')
  if n == nil or n < 0 or n > 1e9 or n ~= math.floor(n) then return 0 end
  return n
end
local prev = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'GET', 'EX', ARGV[2])
if prev then return {'dup', prev} end
-- One read and one write of the week hash: the version and the
-- opportunity count are incremented here, so still atomically.
local oppf = ARGV[3]
local cur = redis.call('HMGET', KEYS[2], 'v', oppf ~= '' and oppf or 'v')
local version = counter(cur[1]) + 1
if version > 1e9 then version = 1 end
local set = {'v', version}
local opps = 0
if oppf ~= '' then
  opps = counter(cur[2]) + 1
  set[3], set[4] = oppf, opps
end
local ndel = tonumber(ARGV[5])
if ndel > 0 then redis.call('HDEL', KEYS[2], unpack(ARGV, 6, 5 + ndel)) end
for i = 6 + ndel, #ARGV do set[#set + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(set))
if opps == 0 or opps == 1 then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
return {'skip', version}
