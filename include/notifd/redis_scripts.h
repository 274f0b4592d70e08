/*
 * redis_scripts.h - Lua scripts of the fast path (bodies in redis_scripts.c,
 * loaded with SCRIPT LOAD on every (re)connect by store.c).
 */
#ifndef NOTIFD_REDIS_SCRIPTS_H
#define NOTIFD_REDIS_SCRIPTS_H

extern const char redis_script_decide_record[];
extern const char redis_script_decide_skip[];
extern const char redis_script_feedback[];

#endif
