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
-- Returns {'dup', stored response} or {'skip'}.
--
-- Most decisions are not to send, and Redis charges a script for every
-- argument and every redis.call (each is interned into Lua, put in a table
-- and collected again): this one takes 9 arguments where decide_record
-- takes 21 and more, which cut Redis's instructions per such decide by
-- about a seventh (docs/benchmarks.md).

local prev = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'GET', 'EX', ARGV[2])
if prev then return {'dup', prev} end
local opps = 0
if ARGV[3] ~= '' then
  -- A counter HINCRBY refuses (not an integer) or one out of decide's
  -- range (stored_fields.h) starts again at 1 rather than failing every
  -- decide of the member.
  opps = redis.pcall('HINCRBY', KEYS[2], ARGV[3], 1)
  if type(opps) ~= 'number' or opps < 1 or opps > 1e9 then
    opps = 1
    redis.call('HSET', KEYS[2], ARGV[3], 1)
  end
end
local ndel = tonumber(ARGV[5])
if ndel > 0 then redis.call('HDEL', KEYS[2], unpack(ARGV, 6, 5 + ndel)) end
if #ARGV > 5 + ndel then redis.call('HSET', KEYS[2], unpack(ARGV, 6 + ndel)) end
if opps == 0 or opps == 1 then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
return {'skip'}
