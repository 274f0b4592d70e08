/*
 * keys.c - Redis key names (see keys.h).
 */
#include "notifd/core/keys.h"

#include <stdio.h>
#include <string.h>

size_t key_member(char *buf, const char *prefix, const char *kind, const char *member,
                  size_t member_len, const char *suffix, size_t suffix_len)
{
    size_t n = 0;
    size_t pl = strlen(prefix), kl = strlen(kind);
    if (member_len > MEMBER_ID_MAX)
        member_len = MEMBER_ID_MAX;
    if (pl + kl + member_len + suffix_len + 4 > KEY_MAX)
        suffix_len = 0; /* cannot happen with validated inputs; stay in bounds */
    memcpy(buf + n, prefix, pl);
    n += pl;
    memcpy(buf + n, kind, kl);
    n += kl;
    buf[n++] = ':';
    buf[n++] = '{';
    memcpy(buf + n, member, member_len);
    n += member_len;
    buf[n++] = '}';
    if (suffix_len > 0) {
        memcpy(buf + n, suffix, suffix_len);
        n += suffix_len;
    }
    buf[n] = '\0';
    return n;
}

size_t key_global(char *buf, const char *prefix, const char *kind, long n)
{
    int len = snprintf(buf, KEY_MAX, "%s%s:%ld", prefix, kind, n);
    return len < 0 ? 0 : (size_t)len;
}

size_t key_field(char *buf, size_t cap, const char *a, const char *b)
{
    if (cap == 0)
        return 0;
    size_t la = strlen(a), lb = strlen(b);
    if (la > cap - 1)
        la = cap - 1;
    memcpy(buf, a, la);
    if (lb > cap - 1 - la)
        lb = cap - 1 - la;
    memcpy(buf + la, b, lb);
    buf[la + lb] = '\0';
    return la + lb;
}
