/*
 * stored_answer.h - is a decision read back from Redis fit to replay?
 *
 * A retried opportunity is answered with the text stored under its
 * idempotency key (P idem:{M}:<opportunity>), spliced into the reply line
 * without re-encoding (protocol.h, proto_ok_line_text). Redis is not
 * trusted: anyone with write access, a bug, or a restored backup can leave
 * any bytes there, and a raw newline in them would split the reply into
 * two lines and shift every later reply on the connection by one. So the
 * text is checked before it is replayed.
 */
#ifndef NOTIFD_STORED_ANSWER_H
#define NOTIFD_STORED_ANSWER_H

#include <stdbool.h>
#include <stddef.h>

/* Far above any answer notifd writes (one message id of at most 256 bytes,
 * one plan, two arm names): a longer text was not written by notifd. */
#define STORED_ANSWER_MAX_BYTES (64u * 1024u)

/* True when `text` is exactly one JSON object on one line, as notifd
 * stores it: at most STORED_ANSWER_MAX_BYTES, no byte below 0x20, starts
 * with '{' and ends with '}', parses as one JSON object (valid UTF-8,
 * nothing after it), and has no "id" or "ok" member (the reply adds its
 * own). Parses the text: for the rare replay path, not for every decide. */
bool stored_answer_valid(const char *text, size_t len);

#endif
