/*
 * send_file: send a file or a directory like `wormhole send PATH`, in pull mode (a
 * blocking event loop, no callbacks).
 *
 *   send_file RELAY_URL PATH [CODE [TRANSIT_RELAY]]
 *
 * Without CODE a code is allocated and printed on stdout ("code: 7-guitarist-revenge");
 * TRANSIT_RELAY is a relay hint such as "tcp:127.0.0.1:4001" (the CLI's --transit-helper).
 * Progress goes to stderr. Exit status 0 once the receiver confirmed every byte and the
 * wormhole closed happily.
 */
#include <inttypes.h>
#include <stdio.h>

#include "wormhole.h"

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s RELAY_URL PATH [CODE [TRANSIT_RELAY]]\n", argv[0]);
        return 2;
    }
    wh_wormhole *w = NULL;
    wh_result r = wh_create(WH_TRANSFER_APPID, argv[1], NULL, NULL, NULL, &w);
    if (r != WH_RESULT_OK) {
        fprintf(stderr, "wh_create: %s\n", wh_result_str(r));
        return 1;
    }
    wh_transfer_options opts = {0}; /* zeroed: defaults */
    opts.transit_relay = argc > 4 ? argv[4] : NULL;
    opts.progress_interval_ms = 500;
    r = argc > 3 ? wh_set_code(w, argv[3]) : wh_allocate_code(w, 2);
    /* The path is checked now; the transfer starts once the receiver shows up. */
    if (r == WH_RESULT_OK) r = wh_send_file(w, argv[2], &opts);
    if (r != WH_RESULT_OK) {
        fprintf(stderr, "error: %s\n", wh_result_str(r));
        wh_free(w);
        return 1;
    }
    int status = 1;
    for (;;) {
        wh_event *ev = NULL;
        if (wh_next_event(w, -1, &ev) != WH_RESULT_OK) break;
        switch (wh_event_get_kind(ev)) {
        case WH_EVENT_KIND_CODE:
            printf("code: %s\n", wh_event_text(ev));
            fflush(stdout);
            break;
        case WH_EVENT_KIND_TRANSFER_PROGRESS:
            fprintf(stderr, "sent %" PRIu64 " of %" PRIu64 " bytes\n", wh_event_bytes_done(ev),
                    wh_event_bytes_total(ev));
            break;
        case WH_EVENT_KIND_FILE_SENT:
            if (wh_event_result(ev) == WH_RESULT_OK) {
                status = 0;
                fprintf(stderr, "transfer complete\n");
            } else {
                fprintf(stderr, "transfer failed: %s\n", wh_event_text(ev));
            }
            wh_close(w); /* `closed` follows */
            break;
        case WH_EVENT_KIND_CLOSED:
            if (wh_event_result(ev) != WH_RESULT_OK) {
                fprintf(stderr, "closed: %s\n", wh_event_text(ev));
                status = 1;
            }
            wh_event_free(ev);
            wh_free(w);
            return status;
        default:
            break;
        }
        wh_event_free(ev);
    }
    wh_free(w);
    return 1;
}
