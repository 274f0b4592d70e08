/*
 * errbuf.h - the one way the pure modules report why something is invalid:
 * a message into a caller's buffer and a -1 to return.
 */
#ifndef NOTIFD_ERRBUF_H
#define NOTIFD_ERRBUF_H

#include <stddef.h>

/* Formats the message into err[errlen] (when err is not NULL) and returns -1. */
int errbuf_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
