/*
 * receive_file: receive a file or a directory like `wormhole receive --accept-file`, in
 * delegate mode (callbacks on the library's dispatcher thread).
 *
 *   receive_file RELAY_URL CODE [DEST_DIR [TRANSIT_RELAY]]
 *
 * Saves into DEST_DIR (default: the current directory) under the offered name, never
 * replacing anything that exists. Prints the saved path on stdout, progress on stderr.
 * Exit status 0 once saved and the wormhole closed happily.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>

#include "wormhole.h"

struct app {
    pthread_mutex_t lock;
    pthread_cond_t done_cond;
    int done;
    int status;
    const char *dest;
    wh_wormhole *w; /* set by wh_create before the code is set, so before any callback */
};

static void on_offer(void *user_data, const char *name, wh_offer_kind kind, uint64_t size) {
    struct app *app = user_data;
    fprintf(stderr, "receiving %s %s (%" PRIu64 " bytes)\n",
            kind == WH_OFFER_KIND_DIRECTORY ? "directory" : "file", name, size);
    /* Decide here (or later, from any thread): accept into a directory, or reject with
     * wh_reject_offer(app->w). */
    wh_result r = wh_accept_offer(app->w, app->dest, false);
    if (r != WH_RESULT_OK) {
        fprintf(stderr, "wh_accept_offer: %s\n", wh_result_str(r));
        wh_close(app->w);
    }
}

static void on_progress(void *user_data, uint64_t done, uint64_t total) {
    (void)user_data;
    fprintf(stderr, "received %" PRIu64 " of %" PRIu64 " bytes\n", done, total);
}

static void on_received(void *user_data, wh_result result, const char *path_or_message) {
    struct app *app = user_data;
    if (result == WH_RESULT_OK) {
        printf("%s\n", path_or_message); /* where it was saved */
        fflush(stdout);
        app->status = 0;
    } else {
        fprintf(stderr, "receive failed: %s\n", path_or_message);
    }
    wh_close(app->w);
}

static void on_text(void *user_data, wh_result result, const char *text, size_t len) {
    struct app *app = user_data;
    (void)len;
    fprintf(stderr, "the sender sent text instead: %s\n", result == WH_RESULT_OK ? text : "-");
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
    if (argc < 3) {
        fprintf(stderr, "usage: %s RELAY_URL CODE [DEST_DIR [TRANSIT_RELAY]]\n", argv[0]);
        return 2;
    }
    struct app app = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 1,
                      argc > 3 ? argv[3] : ".", NULL};
    wh_delegate d = {0}; /* every callback we do not set stays NULL */
    d.user_data = &app;
    d.file_offer = on_offer;
    d.transfer_progress = on_progress;
    d.file_received = on_received;
    d.text_received = on_text;
    d.closed = on_closed;
    wh_result r = wh_create(WH_TRANSFER_APPID, argv[1], NULL, NULL, &d, &app.w);
    if (r != WH_RESULT_OK) {
        fprintf(stderr, "wh_create: %s\n", wh_result_str(r));
        return 1;
    }
    wh_transfer_options opts = {0};
    opts.transit_relay = argc > 4 ? argv[4] : NULL;
    opts.progress_interval_ms = 500;
    /* Start receiving before the code, so the sender's offer cannot arrive first. */
    r = wh_receive_file(app.w, &opts);
    if (r == WH_RESULT_OK) r = wh_set_code(app.w, argv[2]);
    if (r != WH_RESULT_OK) {
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
