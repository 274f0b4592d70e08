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

#include "notifd/decision.h"

#define LUA_STR_(x) #x
#define LUA_STR(x) LUA_STR_(x)

/* A member-hash time or decayed count as notifd's C readers take it
 * (stored_fields.h): a time outside 0..1e11 is missing (nil), a count
 * outside 0..1e12 is 0. The scripts must agree with them, or a value decide
 * ignores would still steer (or, not being a number, fail) every write. */
#define LUA_STORED                                                                         \
    "local function stored_time(v)\n"                                                      \
    "  local n = tonumber(v or '')\n"                                                      \
    "  if n == nil or not (n >= 0 and n <= 1e11) then return nil end\n"                   \
    "  return n\n"                                                                          \
    "end\n"                                                                                 \
    "local function stored_count(v)\n"                                                     \
    "  local n = tonumber(v or '')\n"                                                      \
    "  if n == nil or not (n >= 0 and n <= 1e12) then return 0 end\n"                     \
    "  return n\n"                                                                          \
    "end\n"

/* rescale(key, ts, f): every count of a member hash times f, and
 * updated_at set to ts (the counts are then as of ts). */
#define LUA_RESCALE                                                                        \
    "local function is_count(n)\n"                                                         \
    "  if n == 'visit_org' or n == 'visit_attr' then return true end\n"                    \
    "  if string.sub(n, 1, 5) == 'last_' or string.find(n, '_last_', 1, true) then\n"       \
    "    return false\n"                                                                     \
    "  end\n"                                                                                \
    "  return (string.match(n, '_sent$') or string.match(n, '_delivered$') or\n"           \
    "          string.match(n, '_open$') or string.match(n, '_click$') or\n"               \
    "          string.match(n, '_dismiss$') or string.match(n, '_unsub_n$')) ~= nil\n"     \
    "end\n"                                                                                \
    "local function rescale(key, ts, f)\n"                                                 \
    "  local all = redis.call('HGETALL', key)\n"                                           \
    "  local args = {'updated_at', ts}\n"                                                  \
    "  for i = 1, #all, 2 do\n"                                                            \
    "    if is_count(all[i]) then\n"                                                       \
    "      local v = tonumber(all[i + 1])\n"                                               \
    "      if v then args[#args + 1] = all[i]; args[#args + 1] = string.format('%.9g', v * f) end\n" \
    "    end\n"                                                                            \
    "  end\n"                                                                              \
    "  redis.call('HSET', key, unpack(args))\n"                                            \
    "end\n"

/* from_future(t, ts, hl): a stored time more than FUTURE_HALF_LIVES
 * half-lives after the event's ts. Requests' ts stay within
 * limits.ts_window_s of the wall clock, so such a time was written in
 * another era (a bad clock, a test, a hostile writer). Taken at its word it
 * would erase the present: every count rescaled to almost nothing, every
 * new event added with a weight of almost nothing, a "latest" time never
 * passed again. So the present wins: the stored time is replaced by ts. */
#define FUTURE_HALF_LIVES 16
#define LUA_FROM_FUTURE                                                                    \
    "local function from_future(t, ts, hl)\n"                                              \
    "  return t > ts + " LUA_STR(FUTURE_HALF_LIVES) " * hl\n"                               \
    "end\n"

/* decay(key, ts, hl): the weight of an event at ts in the hash's counts
 * (1 after bringing them to ts); add() and set_max() write one field. */
#define LUA_DECAY                                                                          \
    LUA_STORED                                                                             \
    LUA_RESCALE                                                                            \
    LUA_FROM_FUTURE                                                                        \
    "local function decay(key, ts, hl)\n"                                                  \
    "  local upd = stored_time(redis.call('HGET', key, 'updated_at'))\n"                   \
    "  if upd == nil then\n"                                                               \
    "    redis.call('HSET', key, 'updated_at', ts)\n"                                      \
    "    redis.call('HSETNX', key, 'first_seen', ts)\n"                                    \
    "    return 1\n"                                                                       \
    "  end\n"                                                                              \
    "  if from_future(upd, ts, hl) then\n"                                                 \
    "    redis.call('HSET', key, 'updated_at', ts)\n"                                      \
    "    return 1\n"                                                                       \
    "  end\n"                                                                              \
    "  local w = math.pow(2, (ts - upd) / hl)\n"                                           \
    "  if w <= 2 then return w end\n"                                                      \
    "  rescale(key, ts, 1 / w)\n"                                                          \
    "  return 1\n"                                                                         \
    "end\n"                                                                                \
    "local function add(key, field, w)\n"                                                  \
    "  local wt = string.format('%.9g', w)\n"                                              \
    "  local r = redis.pcall('HINCRBYFLOAT', key, field, wt)\n"                            \
    "  if type(r) ~= 'string' or stored_count(r) ~= tonumber(r) then\n"                   \
    "    redis.call('HSET', key, field, wt)\n" /* it was no count: start from this event */ \
    "  end\n"                                                                               \
    "end\n"                                                                                \
    "local function set_max(key, field, ts, hl)\n"                                         \
    "  local old = stored_time(redis.call('HGET', key, field))\n"                          \
    "  if old == nil or ts > old or from_future(old, ts, hl) then\n"                       \
    "    redis.call('HSET', key, field, ts)\n"                                             \
    "  end\n"                                                                              \
    "end\n"

/*
 * decide_record: records one decision to send, atomically.
 * KEYS: 1 idem, 2 week hash, 3 sent zset, 4 member hash
 * ARGV: 1 ts, 2 the week-hash field of the channel's sends this week
 *       ("<ch>:<week>:sent"), 3 the field counting its opportunities this
 *       week ("<ch>:<week>:opp"; '' when this one does not count), 4 the
 *       weekly cap (-1: none), 5 message id, 6 idempotency ttl s, 7 dedup
 *       window s, 8 response as decided, 9 response if a cap stops the
 *       send, 10 half-life s, 11 week-hash ttl s, 12 member ttl s,
 *       13 week-hash field for the channel's send times ('' none) and 14 the
 *       cap over any 7 days (-1: keep the times, check nothing): the send
 *       is stopped if the stored times within 7 days of ts already reach
 *       it, and if it happens, ts is put first in the field with the
 *       stored times still within 7 days (at most DECISION_MAX_RECENT_SENDS
 *       in all). Checked here, not only from notifd's read, so two
 *       instances deciding for one member at once cannot both pass it.
 *       15, 16 the member-hash fields of the channel's decayed sends and
 *       last send time ("<ch>_sent", "<ch>_last_sent"),
 *       17 n: how many week-hash fields follow to delete (stale weeks),
 *       18.. those n fields, then field/value pairs to set in the week hash
 *       (the EWMA, the recent-scores list, the first week: values notifd
 *       computed from what it read).
 * Returns {'dup', stored response} when the opportunity was decided before
 * (nothing else is touched); {'sent_already'} when the message was sent to
 * the member within the dedup window since notifd read the sent set
 * (nothing is touched: notifd decides again without it); else {'cap'} (a
 * cap stopped the send) or {'sent'}. Decisions not to send go through decide_skip below.
 *
 * Redis charges a script per redis.call (~8,700 instructions each), per
 * argument (~1,100) and per number converted (tonumber is strtod, a number
 * passed on is printed with %.14g: 1,300-2,000 each). So the week hash is
 * read with one HMGET and written with one HSET (the counts incremented
 * here, inside the script, so still atomically), the member hash likewise,
 * field names come ready-made and ts is passed on as the string it came
 * as: ten calls where the feedback script's helpers would take seventeen.
 * A send still costs Redis ~190k instructions here (docs/benchmarks.md),
 * seven Lua-cap calls; the helpers' version cost 194k. The week hash's
 * TTL is renewed with the first counted opportunity of a week (and on any
 * decide that counts none), not on every decide: it then lives at least
 * two weeks past the member's last decide.
 */
const char redis_script_decide_record[] =
    LUA_STORED
    /* A week counter as decide read it (stored_fields.h: an integer in
     * 0..1e9); anything else is missing, 0, so the cap checked here is the
     * one decided on. */
    "local function counter(v)\n"
    "  local n = tonumber(v or '0')\n"
    "  if n == nil or n < 0 or n > 1e9 or n ~= math.floor(n) then return 0 end\n"
    "  return n\n"
    "end\n"
    "local ts = tonumber(ARGV[1])\n"
    /* Dedup, re-checked here: another instance may have sent this message
     * to the member since notifd read the sent set. A retry of this very
     * opportunity gets its stored answer first (it sent the message). */
    "local window = tonumber(ARGV[7])\n"
    "if window > 0 then\n"
    "  local prev = redis.call('GET', KEYS[1])\n"
    "  if prev then return {'dup', prev} end\n"
    "  local last = tonumber(redis.call('ZSCORE', KEYS[3], ARGV[5]) or '')\n"
    "  if last and last > ts - window then return {'sent_already'} end\n"
    "end\n"
    "local sentf, oppf, sendsf = ARGV[2], ARGV[3], ARGV[13]\n"
    "local wk = redis.call('HMGET', KEYS[2], sentf, sendsf ~= '' and sendsf or sentf,\n"
    "                      oppf ~= '' and oppf or sentf)\n"
    "local sent = counter(wk[1])\n"
    "local outcome, resp, sends = 'sent', ARGV[8], nil\n"
    "local cap = tonumber(ARGV[4])\n"
    "if cap >= 0 and sent >= cap then\n"
    "  outcome, resp = 'cap', ARGV[9]\n"
    "elseif sendsf ~= '' then\n"
    "  local n = 0\n"
    "  sends = {ARGV[1]}\n"
    "  for t in string.gmatch(wk[2] or '', '[^,]+') do\n"
    "    local x = tonumber(t)\n"
    "    if x and x > ts - " LUA_STR(DECISION_ROLLING_WINDOW_S) " and x < ts + "
    LUA_STR(DECISION_ROLLING_WINDOW_S) " then\n"
    "      n = n + 1\n"
    "      if #sends < " LUA_STR(DECISION_MAX_RECENT_SENDS) " then sends[#sends + 1] = t end\n"
    "    end\n"
    "  end\n"
    "  local rcap = tonumber(ARGV[14])\n"
    "  if rcap >= 0 and n >= rcap then outcome, resp = 'cap', ARGV[9] end\n"
    "end\n"
    "local prev = redis.call('SET', KEYS[1], resp, 'NX', 'GET', 'EX', ARGV[6])\n"
    "if prev then return {'dup', prev} end\n"
    "local set, opps = {}, 0\n"
    "if oppf ~= '' then\n"
    "  opps = counter(wk[3]) + 1\n"
    "  set[1], set[2] = oppf, opps\n"
    "end\n"
    "local ndel = tonumber(ARGV[17])\n"
    "if ndel > 0 then redis.call('HDEL', KEYS[2], unpack(ARGV, 18, 17 + ndel)) end\n"
    "for i = 18 + ndel, #ARGV do set[#set + 1] = ARGV[i] end\n"
    "if outcome == 'sent' then\n"
    "  set[#set + 1] = sentf\n"
    "  set[#set + 1] = sent + 1\n"
    "  if sends then\n"
    "    set[#set + 1] = sendsf\n"
    "    set[#set + 1] = table.concat(sends, ',')\n"
    "  end\n"
    "end\n"
    "if #set > 0 then redis.call('HSET', KEYS[2], unpack(set)) end\n"
    "if outcome == 'sent' then\n"
    "  if window > 0 then\n"
    "    redis.call('ZADD', KEYS[3], ARGV[1], ARGV[5])\n"
    "    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (ts - window))\n"
    "    redis.call('EXPIRE', KEYS[3], window)\n"
    "  end\n"
    /* The member's decayed sends, as feedback's decay() and add() would
     * leave them (see the top of this file). */
    "  local m = redis.call('HMGET', KEYS[4], 'updated_at', ARGV[15], ARGV[16])\n"
    "  local upd, n = stored_time(m[1]), stored_count(m[2])\n"
    "  local hl = tonumber(ARGV[10])\n"
    "  local w, mset = 1, {}\n"
    LUA_FROM_FUTURE
    "  if upd ~= nil and from_future(upd, ts, hl) then\n"
    "    mset[1], mset[2] = 'updated_at', ARGV[1]\n"
    "  elseif upd == nil then\n"
    "    mset[1], mset[2] = 'updated_at', ARGV[1]\n"
    "    redis.call('HSETNX', KEYS[4], 'first_seen', ARGV[1])\n"
    "  else\n"
    "    w = math.pow(2, (ts - upd) / hl)\n"
    "    if w > 2 then\n"
    LUA_RESCALE
    "      local f = 1 / w\n"
    "      rescale(KEYS[4], ts, f)\n"
    "      n = tonumber(string.format('%.9g', n * f))\n"
    "      w = 1\n"
    "    end\n"
    "  end\n"
    "  mset[#mset + 1] = ARGV[15]\n"
    "  mset[#mset + 1] = string.format('%.17g', n + tonumber(string.format('%.9g', w)))\n"
    "  local last = stored_time(m[3])\n"
    "  if last == nil or ts > last or from_future(last, ts, hl) then\n"
    "    mset[#mset + 1] = ARGV[16]\n"
    "    mset[#mset + 1] = ARGV[1]\n"
    "  end\n"
    "  redis.call('HSET', KEYS[4], unpack(mset))\n"
    "  redis.call('EXPIRE', KEYS[4], ARGV[12])\n"
    "end\n"
    "if opps ~= 1 and opps ~= 0 then return {outcome} end\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[11])\n"
    "return {outcome}\n";

/*
 * decide_skip: records one decision not to send, atomically.
 * KEYS: 1 idem, 2 week hash
 * ARGV: 1 response, 2 idempotency ttl s, 3 the week-hash field counting the
 *       channel's opportunities this week ('' when this one does not count),
 *       4 week-hash ttl s, 5 n: how many week-hash fields follow to delete,
 *       6.. those n fields, then field/value pairs to set in the week hash.
 * Returns {'dup', stored response} or {'skip'}.
 *
 * Most decisions are not to send, and Redis charges a script for every
 * argument and every redis.call (each is interned into Lua, put in a table
 * and collected again): this one takes 9 arguments where decide_record
 * takes 21 and more, which cut Redis's instructions per such decide by
 * about a seventh (docs/benchmarks.md).
 */
const char redis_script_decide_skip[] =
    "local prev = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'GET', 'EX', ARGV[2])\n"
    "if prev then return {'dup', prev} end\n"
    "local opps = 0\n"
    "if ARGV[3] ~= '' then\n"
    /* A counter HINCRBY refuses (not an integer) or one out of decide's
     * range (stored_fields.h) starts again at 1 rather than failing every
     * decide of the member. */
    "  opps = redis.pcall('HINCRBY', KEYS[2], ARGV[3], 1)\n"
    "  if type(opps) ~= 'number' or opps < 1 or opps > 1e9 then\n"
    "    opps = 1\n"
    "    redis.call('HSET', KEYS[2], ARGV[3], 1)\n"
    "  end\n"
    "end\n"
    "local ndel = tonumber(ARGV[5])\n"
    "if ndel > 0 then redis.call('HDEL', KEYS[2], unpack(ARGV, 6, 5 + ndel)) end\n"
    "if #ARGV > 5 + ndel then redis.call('HSET', KEYS[2], unpack(ARGV, 6 + ndel)) end\n"
    "if opps == 0 or opps == 1 then redis.call('EXPIRE', KEYS[2], ARGV[4]) end\n"
    "return {'skip'}\n";

/*
 * feedback: records one member event into the feature hash.
 * KEYS: 1 member hash, 2 the member's opt-outs (P optout:{M}, no TTL: an
 *       unsubscribe holds until a resubscribe, however long the member is
 *       quiet), 3 (optional) the event id's key, P evt:{M}:<id>
 * ARGV: 1 ts, 2 channel ('' when none), 3 event, 4 half-life s,
 *       5 attribution window s, 6 member ttl s, 7 tz_offset_min ('' keep),
 *       8 how long an event id is remembered, s (with KEYS[3])
 * An event whose id was recorded within ARGV[8] changes nothing: -1.
 * A visit within the attribution window after the member's latest open (any
 * channel) counts as attributed (visit_attr), any other as organic
 * (visit_org): the estimator compares the two to find what messages add.
 * Returns 1 when this was the member's first event (the caller then adds the
 * member to the planner's schedule), else 0.
 */
const char redis_script_feedback[] =
    LUA_DECAY
    "if #KEYS > 2 and not redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[8]) then\n"
    "  return -1\n"
    "end\n"
    "local key = KEYS[1]\n"
    "local ts = tonumber(ARGV[1])\n"
    "local ch = ARGV[2]\n"
    "local ev = ARGV[3]\n"
    "local is_new = redis.call('HEXISTS', key, 'updated_at') == 0\n"
    "local hl = tonumber(ARGV[4])\n"
    "local wt = decay(key, ts, hl)\n"
    "if ev == 'delivered' then add(key, ch .. '_delivered', wt)\n"
    "elseif ev == 'open' or ev == 'click' then\n"
    "  add(key, ch .. (ev == 'open' and '_open' or '_click'), wt)\n"
    "  set_max(key, ch .. '_last_open', ts, hl)\n"
    "  set_max(key, 'last_open', ts, hl)\n"
    "elseif ev == 'dismiss' then add(key, ch .. '_dismiss', wt)\n"
    "elseif ev == 'unsubscribe' then\n"
    "  redis.call('HSET', key, ch .. '_unsub', 1)\n"
    "  redis.call('HSET', KEYS[2], ch, 1)\n"
    "  add(key, ch .. '_unsub_n', wt)\n"
    "elseif ev == 'resubscribe' then\n"
    "  redis.call('HSET', key, ch .. '_unsub', 0)\n"
    "  redis.call('HDEL', KEYS[2], ch)\n"
    "elseif ev == 'visit' then\n"
    "  local lo = tonumber(redis.call('HGET', key, 'last_open') or '')\n"
    "  if lo ~= nil and ts >= lo and ts - lo <= tonumber(ARGV[5]) then\n"
    "    add(key, 'visit_attr', wt)\n"
    "  else\n"
    "    add(key, 'visit_org', wt)\n"
    "  end\n"
    "  set_max(key, 'last_visit', ts, hl)\n"
    "end\n"
    "if ARGV[7] ~= '' then redis.call('HSET', key, 'tz_offset_min', ARGV[7]) end\n"
    "redis.call('EXPIRE', key, ARGV[6])\n"
    "if is_new then return 1 end\n"
    "return 0\n";
