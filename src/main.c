/*
 * main.c - the notifd command line: parse options, load and validate the
 * config, then hand over to daemon_run().
 *
 * Exit codes (a contract): 0 clean stop, 2 bad usage or bad config,
 * 1 runtime failure.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "notifd/config/config.h"
#include "notifd/daemon.h"
#include "notifd/net/json_arena.h"
#include "notifd/version.h"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: notifd -c FILE [--check-config]\n"
            "       notifd --version | --help\n"
            "\n"
            "notifd decides, for every notification send opportunity, whether to send\n"
            "and which message, following a weekly pacing plan per member.\n"
            "\n"
            "  -c, --config FILE   config file (JSON); see README.md for every key\n"
            "      --check-config  validate FILE, print every problem, exit 0 or 2\n"
            "  -V, --version       print the version and exit\n"
            "  -h, --help          print this help and exit\n"
            "\n"
            "Runs in the foreground and logs to stderr. SIGHUP reloads the config\n"
            "(a bad file keeps the running one); SIGTERM or SIGINT stop gracefully.\n");
}

int main(int argc, char **argv)
{
    static const struct option long_opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 'k'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL;
    int check_only = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:Vh", long_opts, NULL)) != -1) {
        switch (opt) {
        case 'c': config_path = optarg; break;
        case 'k': check_only = 1; break;
        case 'V': printf("notifd %s\n", NOTIFD_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "notifd: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (config_path == NULL) {
        fprintf(stderr, "notifd: a config file is required (-c FILE)\n");
        usage(stderr);
        return 2;
    }
    config_errors_t errs;
    config_errors_init(&errs);
    config_t *cfg = config_load_file(config_path, 1, &errs);
    if (cfg == NULL) {
        fprintf(stderr, "notifd: %s: %zu problem%s:\n", config_path, errs.count,
                errs.count == 1 ? "" : "s");
        for (size_t i = 0; i < errs.count; i++)
            fprintf(stderr, "  %s\n", errs.items[i]);
        config_errors_free(&errs);
        return 2;
    }
    config_errors_free(&errs);
    if (check_only) {
        printf("%s: OK\n", config_path);
        config_release(cfg);
        return 0;
    }
    /* Before any thread starts: jansson's allocator is process-wide. */
    if (!json_arena_install())
        fprintf(stderr, "notifd: no address space for request arenas; parsing with malloc\n");
    return daemon_run(config_path, cfg);
}
