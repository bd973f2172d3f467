/* test_ref_transfer: one file or directory transfer against another program (the reference
 * CLI in the suite), with the events read either by delegate callbacks or by polling the
 * event fd (poll(2), then wh_next_event without blocking).
 *
 *   test_ref_transfer send    callbacks|fd RELAY_URL CODE PATH     [TRANSIT_RELAY]
 *   test_ref_transfer receive callbacks|fd RELAY_URL CODE DEST_DIR [TRANSIT_RELAY]
 *
 * Exit status 0 when the transfer completed with WH_RESULT_OK, at least one progress event
 * arrived, the offer (receiving) named a file or directory, and the wormhole closed happily.
 * The receiver prints the saved path on stdout.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "wormhole.h"

struct run {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    wh_wormhole *w;
    int sending;
    const char *dest;
    int offers, progress, completed, closed;
    wh_result transfer, close;
};

/* The one place both delivery modes end up in. */
static void on_event(struct run *r, wh_event_kind kind, wh_result result, const char *text,
                     wh_offer_kind offer) {
    pthread_mutex_lock(&r->lock);
    switch (kind) {
    case WH_EVENT_KIND_FILE_OFFER:
        r->offers++;
        if (offer != WH_OFFER_KIND_FILE && offer != WH_OFFER_KIND_DIRECTORY) r->offers = -100;
        if (wh_accept_offer(r->w, r->dest, false) != WH_RESULT_OK) wh_close(r->w);
        break;
    case WH_EVENT_KIND_TRANSFER_PROGRESS:
        r->progress++;
        break;
    case WH_EVENT_KIND_FILE_SENT:
    case WH_EVENT_KIND_FILE_RECEIVED:
        r->completed++;
        r->transfer = result;
        if (result != WH_RESULT_OK) fprintf(stderr, "transfer failed: %s\n", text);
        else if (!r->sending) printf("%s\n", text);
        wh_close(r->w);
        break;
    case WH_EVENT_KIND_CLOSED:
        r->closed++;
        r->close = result;
        if (result != WH_RESULT_OK) fprintf(stderr, "closed: %s\n", text);
        break;
    default:
        break;
    }
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static void cb_offer(void *ud, const char *name, wh_offer_kind kind, uint64_t size) {
    (void)size;
    on_event(ud, WH_EVENT_KIND_FILE_OFFER, WH_RESULT_OK, name, kind);
}
static void cb_progress(void *ud, uint64_t done, uint64_t total) {
    (void)done;
    (void)total;
    on_event(ud, WH_EVENT_KIND_TRANSFER_PROGRESS, WH_RESULT_OK, "", WH_OFFER_KIND_NONE);
}
static void cb_sent(void *ud, wh_result result, const char *message) {
    on_event(ud, WH_EVENT_KIND_FILE_SENT, result, message, WH_OFFER_KIND_NONE);
}
static void cb_received(void *ud, wh_result result, const char *path) {
    on_event(ud, WH_EVENT_KIND_FILE_RECEIVED, result, path, WH_OFFER_KIND_NONE);
}
static void cb_closed(void *ud, wh_result result, const char *message) {
    on_event(ud, WH_EVENT_KIND_CLOSED, result, message, WH_OFFER_KIND_NONE);
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s send|receive callbacks|fd RELAY_URL CODE PATH [TRANSIT_RELAY]\n",
                argv[0]);
        return 2;
    }
    struct run r;
    memset(&r, 0, sizeof r);
    pthread_mutex_init(&r.lock, NULL);
    pthread_cond_init(&r.cond, NULL);
    r.sending = strcmp(argv[1], "send") == 0;
    r.dest = argv[5];
    int callbacks = strcmp(argv[2], "callbacks") == 0;
    wh_delegate d = {0};
    d.user_data = &r;
    d.file_offer = cb_offer;
    d.transfer_progress = cb_progress;
    d.file_sent = cb_sent;
    d.file_received = cb_received;
    d.closed = cb_closed;
    wh_result rc = wh_create(WH_TRANSFER_APPID, argv[3], NULL, NULL, callbacks ? &d : NULL, &r.w);
    if (rc != WH_RESULT_OK) {
        fprintf(stderr, "wh_create: %s\n", wh_result_str(rc));
        return 1;
    }
    wh_transfer_options opts = {0};
    opts.transit_relay = argc > 6 ? argv[6] : NULL;
    rc = r.sending ? wh_send_file(r.w, argv[5], &opts) : wh_receive_file(r.w, &opts);
    if (rc == WH_RESULT_OK) rc = wh_set_code(r.w, argv[4]);
    if (rc != WH_RESULT_OK) {
        fprintf(stderr, "start: %s\n", wh_result_str(rc));
        wh_free(r.w);
        return 1;
    }
    if (callbacks) {
        pthread_mutex_lock(&r.lock);
        while (!r.closed) pthread_cond_wait(&r.cond, &r.lock);
        pthread_mutex_unlock(&r.lock);
    } else {
        int fd = -1;
        if (wh_event_fd(r.w, &fd) != WH_RESULT_OK || fd < 0) {
            fprintf(stderr, "no event fd\n");
            wh_free(r.w);
            return 1;
        }
        while (!r.closed) {
            struct pollfd p = {fd, POLLIN, 0};
            if (poll(&p, 1, 120000) <= 0) {
                fprintf(stderr, "no event within 120 s\n");
                break;
            }
            wh_event *ev = NULL;
            while (wh_next_event(r.w, 0, &ev) == WH_RESULT_OK) {
                on_event(&r, wh_event_get_kind(ev), wh_event_result(ev),
                         wh_event_text(ev) ? wh_event_text(ev) : "", wh_event_offer_kind(ev));
                wh_event_free(ev);
            }
        }
    }
    wh_free(r.w);
    int ok = r.completed == 1 && r.transfer == WH_RESULT_OK && r.progress >= 1 &&
             r.closed == 1 && r.close == WH_RESULT_OK && (r.sending || r.offers == 1);
    if (!ok) {
        fprintf(stderr, "test_ref_transfer: offers=%d progress=%d completed=%d (%s) closed=%d (%s)\n",
                r.offers, r.progress, r.completed, wh_result_str(r.transfer), r.closed,
                wh_result_str(r.close));
    }
    return ok ? 0 : 1;
}
