/*
 * decide_cache.h - the decide path's caches and Redis's invalidations of
 * them (src/fast/decide_cache.c; the caches: core/member_cache.h,
 * core/plan_cache.h).
 */
#ifndef NOTIFD_DECIDE_CACHE_H
#define NOTIFD_DECIDE_CACHE_H

#include <stddef.h>

/* store_invalidate_fn for the app (arg): a key of a member changed, or
 * (key NULL) anything may have. */
void decide_cache_on_invalidate(void *arg, const char *key, size_t len);

#endif
