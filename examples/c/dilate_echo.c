/*
 * dilate_echo: Dilation in pull mode with the event fd in a poll(2) loop. One side serves
 * an "echo" subchannel, the other opens it, sends each line of standard input as one
 * record and prints what comes back.
 *
 *   dilate_echo RELAY_URL serve [CODE]   (without CODE prints "code: 4-purple-sausages")
 *   dilate_echo RELAY_URL send CODE      (lines from stdin, echoes on stdout)
 *
 * A close ends a subchannel both ways (as in the reference: no half-close), so the
 * sender closes only once every echo is back, and its wormhole once the server's
 * answering close arrives; the server, seeing the sender's close, knows its echoes
 * arrived and closes its wormhole too.
 *
 * Every call on a subchannel returns at once: WH_RESULT_WOULD_BLOCK means "not now", and
 * a SUBCHANNEL_READABLE / _WRITABLE / _ACCEPTABLE event says when to call again.
 */
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "wormhole.h"

#define APPID "example.com/wormhole/dilate-echo"

static int check(wh_result r, const char *what) {
    if (r != WH_RESULT_OK) {
        fprintf(stderr, "%s: %s\n", what, wh_result_str(r));
        return 1;
    }
    return 0;
}

/* Serving side: echo every record of every "echo" subchannel (up to 16 of them). */
struct server {
    wh_subchannel *subs[16];
    int n;
};

static void serve_step(wh_wormhole *w, struct server *s) {
    wh_subchannel *sub = NULL;
    while (s->n < 16 && wh_dilation_accept(w, "echo", &sub) == WH_RESULT_OK) s->subs[s->n++] = sub;
    for (int i = 0; i < s->n; i++) {
        uint8_t *data = NULL;
        size_t len = 0;
        while (wh_subchannel_recv(s->subs[i], &data, &len) == WH_RESULT_OK) {
            if (data == NULL) { /* the peer closed it, every echo received: done */
                wh_subchannel_close(s->subs[i]);
                wh_close(w);
                break;
            }
            /* A full window would say WOULD_BLOCK: a real server would keep the record
             * and retry on SUBCHANNEL_WRITABLE; echoing small lines never fills it. */
            if (wh_subchannel_write(s->subs[i], data, len) != WH_RESULT_OK)
                fprintf(stderr, "echo write failed\n");
            wh_bytes_free(data, len);
        }
    }
}

int main(int argc, char **argv) {
    int serving = (argc == 3 || argc == 4) && strcmp(argv[2], "serve") == 0;
    if (!serving && !(argc == 4 && strcmp(argv[2], "send") == 0)) {
        fprintf(stderr, "usage: %s RELAY_URL serve [CODE] | RELAY_URL send CODE\n", argv[0]);
        return 2;
    }
    wh_wormhole *w = NULL;
    wh_options o = {.dilation = true}; /* offer Dilation, like dilation=True */
    if (check(wh_create(APPID, argv[1], NULL, &o, NULL, &w), "wh_create")) return 1;
    wh_result r = argc == 4 ? wh_set_code(w, argv[3]) : wh_allocate_code(w, 2);
    if (!check(r, "code")) r = wh_dilate(w, NULL);
    if (!check(r, "wh_dilate") && serving) r = wh_dilation_listen(w, "echo");
    int fd = -1;
    if (check(r, "listen") || check(wh_event_fd(w, &fd), "wh_event_fd")) {
        wh_free(w);
        return 1;
    }
    struct server srv = {.n = 0};
    wh_subchannel *out = NULL;
    size_t sent = 0, echoed = 0;
    int status = 1, done = 0;
    while (!done) {
        struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
        if (poll(&p, 1, -1) < 0) break;
        wh_event *ev = NULL;
        while (!done && wh_next_event(w, 0, &ev) == WH_RESULT_OK) {
            switch (wh_event_get_kind(ev)) {
            case WH_EVENT_KIND_CODE:
                if (serving) printf("code: %s\n", wh_event_text(ev));
                fflush(stdout);
                break;
            case WH_EVENT_KIND_DILATION_CONNECTED:
                fprintf(stderr, "dilated (%s)\n", wh_event_text(ev));
                if (!serving && out == NULL && !check(wh_dilation_connect(w, "echo", &out), "connect")) {
                    char line[4096];
                    while (fgets(line, sizeof line, stdin)) {
                        if (check(wh_subchannel_write(out, (const uint8_t *)line, strlen(line)), "write")) break;
                        sent += strlen(line);
                    }
                    if (sent == 0) wh_close(w);
                }
                break;
            case WH_EVENT_KIND_DILATION_FAILED:
            case WH_EVENT_KIND_CLOSED:
                fprintf(stderr, "ended: %s\n", wh_event_text(ev));
                status = wh_event_get_kind(ev) == WH_EVENT_KIND_CLOSED && wh_event_result(ev) == WH_RESULT_OK ? 0 : 1;
                done = 1;
                break;
            default:
                break;
            }
            wh_event_free(ev);
        }
        if (serving) serve_step(w, &srv);
        else if (out != NULL) {
            uint8_t *data = NULL;
            size_t len = 0;
            while (sent > 0 && wh_subchannel_recv(out, &data, &len) == WH_RESULT_OK) {
                if (data == NULL) { /* the server's answer to our close: done */
                    wh_close(w);
                    break;
                }
                fwrite(data, 1, len, stdout);
                echoed += len;
                wh_bytes_free(data, len);
                if (echoed >= sent) wh_subchannel_close(out); /* everything came back */
            }
            fflush(stdout);
        }
    }
    for (int i = 0; i < srv.n; i++) wh_subchannel_free(srv.subs[i]);
    wh_subchannel_free(out);
    wh_free(w);
    return status;
}
