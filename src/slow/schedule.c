/*
 * schedule.c - adding members to the planner's schedule (see schedule.h).
 */
#include "notifd/slow/schedule.h"

#include <stdio.h>
#include <string.h>

#include "notifd/lib/hash.h"
#include "notifd/core/keys.h"
#include "notifd/log.h"

int schedule_partition(const char *member, size_t member_len)
{
    return (int)(hash_bytes(0x736368656475ull /* "schedu" */, member, member_len) %
                 SCHEDULE_PARTITIONS);
}

/* A lost ZADD only delays the member to its next decide; the answer that
 * asked for it never waits for it. An error reply (the due set is a key of
 * the wrong type) is logged: the planner counts that partition failed. */
static void on_scheduled(redisReply *reply, void *privdata)
{
    (void)privdata;
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        static log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
        log_limited(&rl, LOG_WARN, "schedule: the due set refused a member", "error=\"%s\"",
                    reply->str);
    }
}

void schedule_member(app_t *app, const config_t *cfg, const char *member, size_t member_len,
                     int64_t due)
{
    char key[KEY_MAX], score[24];
    size_t kl = key_global(key, cfg->redis.prefix, "sched", schedule_partition(member, member_len));
    int sl = snprintf(score, sizeof score, "%lld", (long long)due);
    /* LT, not NX: a member already due keeps its time unless this one is
     * earlier. NX would also keep a time that never comes (a score of
     * +inf or years ahead written by anything but notifd), and with it the
     * member out of every pass for good. */
    const char *argv[] = {"ZADD", key, "LT", score, member};
    size_t lens[] = {4, kl, 2, (size_t)sl, member_len};
    (void)store_command(app->store, on_scheduled, NULL, 5, argv, lens);
}
