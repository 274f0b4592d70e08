/*
 * daemon.h - the process lifecycle: start, reload on SIGHUP, graceful stop on
 * SIGTERM/SIGINT, systemd notification and watchdog.
 */
#ifndef NOTIFD_DAEMON_H
#define NOTIFD_DAEMON_H

#include "notifd/app.h"

/* Runs notifd with an already validated config until it stops; returns the
 * process exit code (0 clean stop, 1 runtime failure). Takes over `cfg`. */
int daemon_run(const char *config_path, config_t *cfg);

/* Reloads app->config_path; keeps the old snapshot if the new file is bad.
 * Returns true when the new config is in force. */
bool daemon_reload(app_t *app);

#endif
