/*
 * fuzz_request.c - fuzz target: request-line framing, JSON parsing and
 * decide-request validation, as the server runs them on untrusted bytes.
 *
 * The input is split into reads of varying sizes, framed into lines (with a
 * small max line so the over-long path is exercised), parsed, and every
 * object is validated as a decide request. Errors must come with a message;
 * nothing may crash, leak or read out of bounds.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "notifd/config/config.h"
#include "notifd/net/framing.h"
#include "notifd/net/json_parse.h"
#include "notifd/net/protocol.h"
#include "notifd/fast/request_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static config_t *fuzz_config(void)
{
    static config_t *cfg;
    if (cfg == NULL) {
        config_errors_t errs;
        config_errors_init(&errs);
        cfg = config_load_string("{\"limits\":{\"max_candidates\":50}}", 1, &errs);
        config_errors_free(&errs);
        if (cfg == NULL)
            abort();
    }
    return cfg;
}

static void handle_line(const char *line, size_t len)
{
    /* The server's own parser (protocol.c), cross-checked against jansson:
     * both must accept and reject the same lines. */
    proto_parse_error_t perr;
    json_t *root = proto_parse_line(line, len, &perr);
    if (memchr(line, '\0', len) != NULL) {
        /* A raw NUL byte is never valid JSON (not whitespace, not allowed in
         * a string). jansson 2.14 lets one pass between tokens; the server's
         * parser must reject the line. */
        if (root != NULL)
            abort();
        return;
    }
    json_error_t jerr;
    json_t *ref = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if ((root == NULL) != (ref == NULL) || (root != NULL && !json_equal(root, ref)))
        abort();
    json_decref(ref);
    if (root == NULL)
        return;
    if (json_is_object(root)) {
        decide_request_t r;
        const char *why = decide_request_parse(&r, root, fuzz_config(), 1800000000);
        if (why != NULL && why[0] == '\0')
            abort();
        if (why == NULL) {
            for (size_t i = 0; i < r.n; i++)
                if (r.candidates[i].id_len == 0 || r.candidates[i].id == NULL)
                    abort();
        }
        decide_request_free(&r);
        size_t out_len;
        char *out = proto_error_line(json_object_get(root, "id"), PROTO_BAD_REQUEST, "x",
                                     &out_len);
        if (out == NULL || out_len == 0 || out[out_len - 1] != '\n')
            abort();
        free(out);
    }
    json_decref(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    framer_t f;
    framer_init(&f, 512);
    size_t off = 0;
    unsigned step = size > 0 ? 1u + data[0] % 97u : 1u;
    while (off < size) {
        size_t want = size - off < step ? size - off : step;
        size_t took = framer_feed(&f, (const char *)data + off, want);
        off += took;
        const char *line;
        size_t len;
        framer_result_t r;
        while ((r = framer_next(&f, &line, &len)) != FRAMER_NEED_MORE)
            if (r == FRAMER_LINE)
                handle_line(line, len);
        if (took == 0 && framer_buffered(&f) == 0)
            break;
    }
    framer_free(&f);
    return 0;
}
