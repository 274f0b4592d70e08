/*
 * explain_print.h - `notifctl explain` for a person: the explain op's
 * answer (README.md, "explain") as a few readable lines.
 */
#ifndef NOTIFCTL_EXPLAIN_PRINT_H
#define NOTIFCTL_EXPLAIN_PRINT_H

#include <jansson.h>
#include <stdio.h>

/* Prints an ok:true explain answer. Fields it does not know are left out;
 * --json prints the whole answer. */
void explain_print(FILE *out, const json_t *resp);

#endif
