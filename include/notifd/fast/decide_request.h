/*
 * decide_request.h - the decide op's request, from wherever it was read:
 * the scanner's result when ops_handle_line() scanned the line
 * (decide_scan.h), else the JSON tree (decide_request_parse).
 */
#ifndef NOTIFD_FAST_DECIDE_REQUEST_H
#define NOTIFD_FAST_DECIDE_REQUEST_H

#include "notifd/ops.h"

/* Fills *out (the caller frees it with decide_request_free, error or not)
 * and returns NULL, or the bad_request message; the same message either
 * way for the same line. */
const char *decide_request_of(request_t *req, decide_request_t *out, const config_t *cfg,
                              int64_t now);

#endif
