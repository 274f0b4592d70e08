/*
 * app.c - the config pointer shared between the loop and the planner
 * thread (see app.h).
 */
#include "notifd/app.h"

config_t *app_config_acquire(app_t *app)
{
    pthread_mutex_lock(&app->config_lock);
    config_t *cfg = config_acquire(app->config);
    pthread_mutex_unlock(&app->config_lock);
    return cfg;
}

void app_config_swap(app_t *app, config_t *next)
{
    pthread_mutex_lock(&app->config_lock);
    config_t *old = app->config;
    app->config = next;
    pthread_mutex_unlock(&app->config_lock);
    config_release(old);
}
