/*
 * send_text: send one text message like `wormhole send --text`, in pull mode with the
 * event fd in a poll(2) loop.
 *
 *   send_text RELAY_URL TEXT [CODE]
 *
 * Without CODE a code is allocated and printed ("code: 4-purple-sausages").
 * Exit status 0 once the receiver acknowledged and the wormhole closed happily.
 */
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "wormhole.h"

#define APPID WH_TRANSFER_APPID /* the app id of `wormhole send` / `wormhole receive` */

static int check(wh_result r, const char *what) {
    if (r != WH_RESULT_OK) {
        fprintf(stderr, "%s: %s\n", what, wh_result_str(r));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s RELAY_URL TEXT [CODE]\n", argv[0]);
        return 2;
    }
    wh_wormhole *w = NULL;
    /* NULL delegate: pull mode. */
    if (check(wh_create(APPID, argv[1], NULL, NULL, NULL, &w), "wh_create")) return 1;

    wh_result r = argc == 4 ? wh_set_code(w, argv[3]) : wh_allocate_code(w, 2);
    if (check(r, "code") || check(wh_send_text(w, argv[2]), "wh_send_text")) {
        wh_free(w);
        return 1;
    }

    int fd = -1;
    if (check(wh_event_fd(w, &fd), "wh_event_fd")) {
        wh_free(w);
        return 1;
    }
    int status = 1, done = 0;
    while (!done) {
        struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
        if (poll(&p, 1, -1) < 0) break;
        wh_event *ev = NULL;
        /* Drain: the fd stays readable while events wait. */
        while (!done && wh_next_event(w, 0, &ev) == WH_RESULT_OK) {
            switch (wh_event_get_kind(ev)) {
            case WH_EVENT_KIND_CODE:
                printf("code: %s\n", wh_event_text(ev));
                fflush(stdout);
                break;
            case WH_EVENT_KIND_TEXT_SENT:
                if (wh_event_result(ev) == WH_RESULT_OK) {
                    printf("text message sent\n");
                    status = 0;
                } else {
                    fprintf(stderr, "send failed: %s\n", wh_event_text(ev));
                }
                wh_close(w);
                break;
            case WH_EVENT_KIND_CLOSED:
                if (wh_event_result(ev) != WH_RESULT_OK) {
                    fprintf(stderr, "closed: %s\n", wh_event_text(ev));
                    status = 1;
                }
                done = 1;
                break;
            default:
                break;
            }
            wh_event_free(ev);
        }
    }
    wh_free(w);
    return status;
}
