/*
 * receive_text: receive one text message like `wormhole receive`, in delegate mode
 * (callbacks on the library's dispatcher thread).
 *
 *   receive_text RELAY_URL CODE
 *
 * Prints the text on stdout. Exit status 0 once it arrived and the wormhole closed
 * happily.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "wormhole.h"

#define APPID WH_TRANSFER_APPID /* the app id of `wormhole send` / `wormhole receive` */

struct app {
    pthread_mutex_t lock;
    pthread_cond_t done_cond;
    int done;
    int status;
    wh_wormhole *w; /* set by wh_create before the code is set, so before on_text */
};

static void on_text(void *user_data, wh_result result, const char *text, size_t len) {
    struct app *app = user_data;
    if (result == WH_RESULT_OK) {
        fwrite(text, 1, len, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        app->status = 0;
    } else {
        fprintf(stderr, "receive failed: %s\n", text);
    }
    /* Calling back into the library from a callback is allowed. */
    wh_close(app->w);
}

static void on_closed(void *user_data, wh_result result, const char *message) {
    struct app *app = user_data;
    if (result != WH_RESULT_OK) {
        fprintf(stderr, "closed: %s\n", message);
        app->status = 1;
    }
    pthread_mutex_lock(&app->lock);
    app->done = 1;
    pthread_cond_signal(&app->done_cond);
    pthread_mutex_unlock(&app->lock);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s RELAY_URL CODE\n", argv[0]);
        return 2;
    }
    struct app app = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 1, NULL};
    wh_delegate d = {0};
    d.user_data = &app;
    d.text_received = on_text;
    d.closed = on_closed;

    wh_result r = wh_create(APPID, argv[1], NULL, NULL, &d, &app.w);
    if (r != WH_RESULT_OK) {
        fprintf(stderr, "wh_create: %s\n", wh_result_str(r));
        return 1;
    }
    /* Start receiving before the code is set, so the offer cannot be missed. */
    if ((r = wh_receive_text(app.w)) != WH_RESULT_OK || (r = wh_set_code(app.w, argv[2])) != WH_RESULT_OK) {
        fprintf(stderr, "error: %s\n", wh_result_str(r));
        wh_free(app.w);
        return 1;
    }
    pthread_mutex_lock(&app.lock);
    while (!app.done) pthread_cond_wait(&app.done_cond, &app.lock);
    pthread_mutex_unlock(&app.lock);
    wh_free(app.w);
    return app.status;
}
