/*
 * redis_scripts.h - Lua scripts of the fast path (the text of each is
 * src/store/lua/<name>.lua, embedded at build time; see redis_scripts.c), loaded
 * with SCRIPT LOAD on every (re)connect by store.c. The planner's plan-write
 * script, planner_script_plan_write (planner.h), is embedded the same way.
 */
#ifndef NOTIFD_REDIS_SCRIPTS_H
#define NOTIFD_REDIS_SCRIPTS_H

extern const char redis_script_decide_record[];
extern const char redis_script_feedback[];

#endif
