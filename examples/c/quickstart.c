/* The seed's quick example in C: allocate a code, send a message, print what the peer
 * sends back, close. Blocking pull mode: no callbacks, no threads of our own.
 *
 *   quickstart RELAY_URL            # then run the peer with the printed code
 *   quickstart RELAY_URL CODE       # join a code allocated elsewhere
 */
#include <stdio.h>
#include <wormhole.h>

int main(int argc, char **argv) {
    const char *relay = argc > 1 ? argv[1] : "ws://relay.magic-wormhole.io:4000/v1";
    wh_wormhole *w = NULL;
    wh_result r = wh_create("example.com/quickstart", relay, NULL, NULL, NULL, &w);
    if (r != WH_RESULT_OK) {
        fprintf(stderr, "wh_create: %s\n", wh_result_str(r));
        return 1;
    }
    r = argc > 2 ? wh_set_code(w, argv[2]) : wh_allocate_code(w, 2);
    if (r == WH_RESULT_OK) r = wh_send(w, (const uint8_t *)"outbound data", 13);
    if (r != WH_RESULT_OK) {
        fprintf(stderr, "error: %s\n", wh_result_str(r));
        wh_free(w);
        return 1;
    }
    int status = 1;
    for (;;) {
        wh_event *ev = NULL;
        if (wh_next_event(w, -1, &ev) != WH_RESULT_OK) break; /* -1: wait forever */
        wh_event_kind kind = wh_event_get_kind(ev);
        if (kind == WH_EVENT_KIND_CODE) {
            printf("code: %s\n", wh_event_text(ev));
            fflush(stdout);
        } else if (kind == WH_EVENT_KIND_MESSAGE) {
            printf("got data, %zu bytes\n", wh_event_len(ev));
            wh_close(w);
        } else if (kind == WH_EVENT_KIND_CLOSED) {
            status = wh_event_result(ev) == WH_RESULT_OK ? 0 : 1;
            printf("closed: %s\n", wh_event_text(ev));
            wh_event_free(ev);
            break;
        }
        wh_event_free(ev); /* every event handed out is ours to free */
    }
    wh_free(w);
    return status;
}
