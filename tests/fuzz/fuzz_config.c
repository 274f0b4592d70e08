/*
 * fuzz_config.c - fuzz target: config loading and validation.
 *
 * Any bytes must either load into a config or produce a list of problems;
 * never crash, leak or read out of bounds. Built as a libFuzzer binary with
 * clang and -DNOTIFD_FUZZ=ON, otherwise replayed over corpus/config by
 * replay_main.c as a regression test.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "notifd/config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    config_errors_t errs;
    config_errors_init(&errs);
    config_t *cfg = config_load_string(text, 1, &errs);
    if (cfg != NULL) {
        /* A loaded config must be usable: look up every channel by name. */
        for (int c = 0; c < cfg->n_channels; c++)
            if (config_channel_index(cfg, cfg->channels[c], strlen(cfg->channels[c])) != c)
                abort();
        config_release(cfg);
    } else if (errs.count == 0) {
        abort(); /* a rejected config must say why */
    }
    config_errors_free(&errs);
    free(text);
    return 0;
}
