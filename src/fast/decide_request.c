/*
 * decide_request.c - see decide_request.h.
 */
#include "notifd/fast/decide_request.h"

const char *decide_request_of(request_t *req, decide_request_t *out, const config_t *cfg,
                              int64_t now)
{
    if (req->scanned)
        return decide_scan_take(&req->scan, out, cfg, now);
    return decide_request_parse(out, req->root, cfg, now);
}
