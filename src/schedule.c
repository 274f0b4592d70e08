/*
 * schedule.c - adding members to the planner's schedule (see schedule.h).
 */
#include "notifd/schedule.h"

#include <stdio.h>
#include <string.h>

#include "notifd/hash.h"
#include "notifd/keys.h"

int schedule_partition(const char *member, size_t member_len)
{
    return (int)(hash_bytes(0x736368656475ull /* "schedu" */, member, member_len) %
                 SCHEDULE_PARTITIONS);
}

static void on_scheduled(redisReply *reply, void *privdata)
{
    (void)reply; /* a lost ZADD only delays the member to its next decide */
    (void)privdata;
}

void schedule_member(app_t *app, const config_t *cfg, const char *member, size_t member_len,
                     int64_t due)
{
    char key[KEY_MAX], score[24];
    size_t kl = key_global(key, cfg->redis.prefix, "sched", schedule_partition(member, member_len));
    int sl = snprintf(score, sizeof score, "%lld", (long long)due);
    /* LT: a member already due keeps the earlier time, and a due time from
     * another era (a far-future ts) is brought back by the next decide,
     * instead of keeping the member off every pass until then. */
    const char *argv[] = {"ZADD", key, "LT", score, member};
    size_t lens[] = {4, kl, 2, (size_t)sl, member_len};
    (void)store_command(app->store, on_scheduled, NULL, 5, argv, lens);
}
