-- plan_write.lua - replaces one member's plan hash in one command.
--
-- Embedded in notifd at build time as planner_script_plan_write
-- (src/store/redis_scripts.c, src/store/lua/embed.cmake); loaded with SCRIPT LOAD by
-- the planner and by store.c on every (re)connect. Its arguments are built
-- by planner_write_args_build() in src/slow/planner.c (P is redis.prefix, M the
-- member id):
--
--   KEYS[1]   P plan:{M}: the plan key
--   ARGV[1]   the version to write (the script writes stored + 1 instead if
--             the stored version is already >= it, so versions never repeat
--             even when two writers race)
--   ARGV[2]   TTL, s
--   ARGV[3 ..] field/value pairs
--
-- DEL then HSET inside one script: never half a plan, and no stale
-- <channel>_per_week from an older grid. Returns the version written.

local v = tonumber(ARGV[1])
local old = tonumber(redis.call('HGET', KEYS[1], 'version') or '')
if old ~= nil and old >= v then v = math.floor(old) + 1 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'version', v, unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return v
