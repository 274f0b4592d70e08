/*
 * redis_scripts.c - the Lua scripts notifd runs in Redis.
 *
 * Scripts exist where several keys must change together or a read-then-write
 * must be atomic: the weekly hard cap must hold when many connections, or
 * many notifd instances, decide for one member at once, so "check the count,
 * then increment it" runs inside Redis. Everything a script touches belongs
 * to one member (keys share the member's hash slot).
 *
 * Each script is a file of its own, src/store/lua/<name>.lua, with its contract
 * (what KEYS[i] and ARGV[i] are, what it returns) in its header comment.
 * At build time src/store/lua/embed.cmake turns each file into a C string literal,
 * <build>/generated/lua/<name>.lua.inc, included below as the initializer of
 * the script's array: the text Redis receives is the file, byte for byte,
 * comments included (so an error's "user_script:<line>" is the file's line).
 * tests/unit/test_lua_scripts.c checks the embedded text against the files;
 * tests/integration/test_lua_scripts.py loads each file into a real Redis.
 *
 * Member feature counts decay exponentially (features.half_life_days); how
 * the scripts keep them is at the top of src/store/lua/feedback.lua.
 */
#include "notifd/store/redis_scripts.h"

#include "notifd/slow/planner.h"

/* decide_record: records one decision to send, atomically (weekly and 7-day
 * caps, dedup, sent set, the member's decayed sends). */
const char redis_script_decide_record[] =
#include "lua/decide_record.lua.inc"
    ;

/* feedback: records one member event into the feature hash. */
const char redis_script_feedback[] =
#include "lua/feedback.lua.inc"
    ;

/* plan_write: replaces one member's plan hash (declared in planner.h). */
const char planner_script_plan_write[] =
#include "lua/plan_write.lua.inc"
    ;
