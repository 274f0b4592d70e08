/*
 * redis_scripts.c - the Lua scripts of the fast path.
 *
 * Scripts exist where several keys must change together or a read-then-write
 * must be atomic: the weekly hard cap must hold when many connections, or
 * many notifd instances, decide for one member at once, so "check the count,
 * then increment it" runs inside Redis. Everything a script touches belongs
 * to one member (keys share the member's hash slot).
 *
 * Member feature counts decay exponentially (features.half_life_days). The
 * hash keeps every count as of `updated_at`, and an event at time ts is
 * added with weight 2^((ts - updated_at)/half_life): in updated_at's units,
 * so no other field has to be rewritten (a late event gets a weight below
 * 1). Only when that weight would pass 2 (a half-life since updated_at) are
 * all counts brought to ts and updated_at moved, which keeps the numbers
 * small and costs one HGETALL per member and half-life instead of per write.
 * The C reader (features.c) decays from updated_at to "now", so both give
 * every event the weight 2^(-(now - ts)/half_life).
 */
#include "notifd/redis_scripts.h"

#define LUA_DECAY                                                                          \
    "local function is_count(n)\n"                                                         \
    "  if n == 'visit_org' or n == 'visit_attr' then return true end\n"                    \
    "  if string.sub(n, 1, 5) == 'last_' or string.find(n, '_last_', 1, true) then\n"       \
    "    return false\n"                                                                     \
    "  end\n"                                                                                \
    "  return (string.match(n, '_sent$') or string.match(n, '_delivered$') or\n"           \
    "          string.match(n, '_open$') or string.match(n, '_click$') or\n"               \
    "          string.match(n, '_dismiss$') or string.match(n, '_unsub_n$')) ~= nil\n"     \
    "end\n"                                                                                \
    "local function decay(key, ts, hl)\n"                                                  \
    "  local upd = tonumber(redis.call('HGET', key, 'updated_at') or '')\n"                \
    "  if upd == nil then\n"                                                               \
    "    redis.call('HSET', key, 'updated_at', ts)\n"                                      \
    "    redis.call('HSETNX', key, 'first_seen', ts)\n"                                    \
    "    return 1\n"                                                                       \
    "  end\n"                                                                              \
    "  local w = math.pow(2, (ts - upd) / hl)\n"                                           \
    "  if w <= 2 then return w end\n"                                                      \
    "  local f = 1 / w\n"                                                                  \
    "  local all = redis.call('HGETALL', key)\n"                                           \
    "  local args = {'updated_at', ts}\n"                                                  \
    "  for i = 1, #all, 2 do\n"                                                            \
    "    if is_count(all[i]) then\n"                                                       \
    "      local v = tonumber(all[i + 1])\n"                                               \
    "      if v then args[#args + 1] = all[i]; args[#args + 1] = string.format('%.9g', v * f) end\n" \
    "    end\n"                                                                            \
    "  end\n"                                                                              \
    "  redis.call('HSET', key, unpack(args))\n"                                            \
    "  return 1\n"                                                                         \
    "end\n"                                                                                \
    "local function add(key, field, w)\n"                                                  \
    "  redis.call('HINCRBYFLOAT', key, field, string.format('%.9g', w))\n"                 \
    "end\n"                                                                                \
    "local function set_max(key, field, ts)\n"                                             \
    "  local old = tonumber(redis.call('HGET', key, field) or '')\n"                       \
    "  if old == nil or ts > old then redis.call('HSET', key, field, ts) end\n"             \
    "end\n"

/*
 * decide_record: records one decision atomically.
 * KEYS: 1 idem, 2 week hash, 3 sent zset, 4 recent-scores list, 5 member hash
 * ARGV: 1 ts, 2 channel, 3 week index, 4 want_send (0/1), 5 cap (-1: none),
 *       6 message id, 7 count the opportunity (0/1), 8 best score ('' none),
 *       9 scores kept, 10 idempotency ttl, 11 dedup window s,
 *       12 response as decided, 13 response if the cap stops the send
 *       ('' when not sending),
 *       14 half-life s, 15 new EWMA ('' keep), 16 EWMA week ('' keep),
 *       17 week-hash ttl, 18 member ttl, 19 share of this week still ahead
 *       (recorded with the member's first opportunity: a first week that was
 *       only partly observed is scaled up, or skipped when mostly unseen)
 * Returns {outcome, response}: outcome is 'dup' (already decided: the stored
 * response), 'cap' (the send was stopped by the weekly cap), 'sent' or 'skip'.
 */
const char redis_script_decide_record[] =
    LUA_DECAY
    "local prev = redis.call('GET', KEYS[1])\n"
    "if prev then return {'dup', prev} end\n"
    "local ts = tonumber(ARGV[1])\n"
    "local ch = ARGV[2]\n"
    "local w = tonumber(ARGV[3])\n"
    "local outcome = 'skip'\n"
    "local sentf = ch .. ':' .. w .. ':sent'\n"
    "if ARGV[7] == '1' then\n"
    "  redis.call('HINCRBY', KEYS[2], ch .. ':' .. w .. ':opp', 1)\n"
    "  if redis.call('HSETNX', KEYS[2], ch .. ':first_week', w) == 1 then\n"
    "    redis.call('HSET', KEYS[2], ch .. ':first_frac', ARGV[19])\n"
    "  end\n"
    "end\n"
    "if ARGV[15] ~= '' then redis.call('HSET', KEYS[2], ch .. ':ewma', ARGV[15]) end\n"
    "if ARGV[16] ~= '' then redis.call('HSET', KEYS[2], ch .. ':ewma_week', ARGV[16]) end\n"
    "redis.call('HDEL', KEYS[2], ch .. ':' .. (w - 3) .. ':opp', ch .. ':' .. (w - 3) .. ':sent')\n"
    "if ARGV[4] == '1' then\n"
    "  local n = tonumber(redis.call('HGET', KEYS[2], sentf) or '0')\n"
    "  local cap = tonumber(ARGV[5])\n"
    "  if cap >= 0 and n >= cap then\n"
    "    outcome = 'cap'\n"
    "  else\n"
    "    outcome = 'sent'\n"
    "    redis.call('HINCRBY', KEYS[2], sentf, 1)\n"
    "    local window = tonumber(ARGV[11])\n"
    "    if window > 0 then\n"
    "      redis.call('ZADD', KEYS[3], ts, ARGV[6])\n"
    "      redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (ts - window))\n"
    "      redis.call('EXPIRE', KEYS[3], window)\n"
    "    end\n"
    "    local wt = decay(KEYS[5], ts, tonumber(ARGV[14]))\n"
    "    add(KEYS[5], ch .. '_sent', wt)\n"
    "    set_max(KEYS[5], ch .. '_last_sent', ts)\n"
    "    redis.call('EXPIRE', KEYS[5], ARGV[18])\n"
    "  end\n"
    "end\n"
    "if ARGV[8] ~= '' then\n"
    "  redis.call('LPUSH', KEYS[4], ARGV[8])\n"
    "  redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[9]) - 1)\n"
    "  redis.call('EXPIRE', KEYS[4], ARGV[17])\n"
    "end\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[17])\n"
    "local resp = ARGV[12]\n"
    "if outcome == 'cap' then resp = ARGV[13] end\n"
    "redis.call('SET', KEYS[1], resp, 'EX', ARGV[10])\n"
    "return {outcome, resp}\n";

/*
 * feedback: records one member event into the feature hash.
 * KEYS: 1 member hash
 * ARGV: 1 ts, 2 channel ('' when none), 3 event, 4 half-life s,
 *       5 attribution window s, 6 member ttl s, 7 tz_offset_min ('' keep)
 * A visit within the attribution window after the member's latest open (any
 * channel) counts as attributed (visit_attr), any other as organic
 * (visit_org): the estimator compares the two to find what messages add.
 * Returns 1 when this was the member's first event (the caller then adds the
 * member to the planner's schedule), else 0.
 */
const char redis_script_feedback[] =
    LUA_DECAY
    "local key = KEYS[1]\n"
    "local ts = tonumber(ARGV[1])\n"
    "local ch = ARGV[2]\n"
    "local ev = ARGV[3]\n"
    "local is_new = redis.call('HEXISTS', key, 'updated_at') == 0\n"
    "local wt = decay(key, ts, tonumber(ARGV[4]))\n"
    "if ev == 'delivered' then add(key, ch .. '_delivered', wt)\n"
    "elseif ev == 'open' or ev == 'click' then\n"
    "  add(key, ch .. (ev == 'open' and '_open' or '_click'), wt)\n"
    "  set_max(key, ch .. '_last_open', ts)\n"
    "  set_max(key, 'last_open', ts)\n"
    "elseif ev == 'dismiss' then add(key, ch .. '_dismiss', wt)\n"
    "elseif ev == 'unsubscribe' then\n"
    "  redis.call('HSET', key, ch .. '_unsub', 1)\n"
    "  add(key, ch .. '_unsub_n', wt)\n"
    "elseif ev == 'resubscribe' then redis.call('HSET', key, ch .. '_unsub', 0)\n"
    "elseif ev == 'visit' then\n"
    "  local lo = tonumber(redis.call('HGET', key, 'last_open') or '')\n"
    "  if lo ~= nil and ts >= lo and ts - lo <= tonumber(ARGV[5]) then\n"
    "    add(key, 'visit_attr', wt)\n"
    "  else\n"
    "    add(key, 'visit_org', wt)\n"
    "  end\n"
    "  set_max(key, 'last_visit', ts)\n"
    "end\n"
    "if ARGV[7] ~= '' then redis.call('HSET', key, 'tz_offset_min', ARGV[7]) end\n"
    "redis.call('EXPIRE', key, ARGV[6])\n"
    "if is_new then return 1 end\n"
    "return 0\n";
