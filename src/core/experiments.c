/*
 * experiments.c - stable arm assignment (see experiments.h).
 */
#include "notifd/core/experiments.h"

#include <string.h>

#include "notifd/lib/hash.h"

double experiments_position(const char *salt, const char *member, size_t member_len)
{
    uint64_t h = hash_bytes(0x6578706572696dull /* "experim" */, salt, strlen(salt));
    return hash_to_unit(hash_bytes(h, member, member_len));
}

int experiments_assign(const char *salt, const double *shares, int n_arms, const char *member,
                       size_t member_len)
{
    double u = experiments_position(salt, member, member_len);
    double upper = 0.0;
    for (int i = 0; i < n_arms; i++) {
        upper += shares[i];
        if (u < upper)
            return i;
    }
    return -1;
}

bool experiments_in_holdout(const char *salt, double share, const char *member,
                            size_t member_len)
{
    if (!(share > 0.0))
        return false;
    return experiments_position(salt, member, member_len) < share;
}
