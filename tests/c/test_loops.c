#define _POSIX_C_SOURCE 200809L
/* test_loops: the pull API inside foreign event loops. Two wormholes play ping-pong, their
 * event fds watched by select(2), then by a libuv loop (uv_poll_t) when built with
 * -DWH_HAVE_LIBUV (the suite does so when pkg-config finds libuv).
 *
 *   test_loops RELAY_URL
 */
#include <sys/select.h>

#include "harness.h"

#ifdef WH_HAVE_LIBUV
#include <uv.h>
#endif

#define APPID "example.com/wormhole/c-tests-loops"

struct peer {
    wh_wormhole *w;
    int fd;
    const char *reply; /* sent when the first message arrives (then close) */
    char got[32];
    int closed;
    wh_result outcome;
};

/* Drain the queue, as a loop does when the fd is readable. */
static void drain(struct peer *p) {
    wh_event *ev = NULL;
    while (wh_next_event(p->w, 0, &ev) == WH_RESULT_OK) {
        wh_event_kind k = wh_event_get_kind(ev);
        if (k == WH_EVENT_KIND_MESSAGE) {
            snprintf(p->got, sizeof p->got, "%.*s", (int)wh_event_len(ev), (const char *)wh_event_data(ev));
            if (p->reply) CHECK_RC(wh_send(p->w, (const uint8_t *)p->reply, strlen(p->reply)), WH_RESULT_OK);
            CHECK_RC(wh_close(p->w), WH_RESULT_OK);
        } else if (k == WH_EVENT_KIND_CLOSED) {
            p->closed = 1;
            p->outcome = wh_event_result(ev);
        }
        wh_event_free(ev);
    }
}

static void setup(const char *relay, struct peer *a, struct peer *b, unsigned n) {
    char code[64];
    h_code(code, sizeof code, n, "loop-test");
    memset(a, 0, sizeof *a);
    memset(b, 0, sizeof *b);
    a->w = h_create(relay, APPID);
    b->w = h_create(relay, APPID);
    b->reply = "pong";
    CHECK_RC(wh_event_fd(a->w, &a->fd), WH_RESULT_OK);
    CHECK_RC(wh_event_fd(b->w, &b->fd), WH_RESULT_OK);
    CHECK_RC(wh_set_code(a->w, code), WH_RESULT_OK);
    CHECK_RC(wh_set_code(b->w, code), WH_RESULT_OK);
    CHECK_RC(wh_send(a->w, (const uint8_t *)"ping", 4), WH_RESULT_OK);
}

static void finish(struct peer *a, struct peer *b, const char *loop) {
    if (!(a->closed && b->closed && a->outcome == WH_RESULT_OK && b->outcome == WH_RESULT_OK &&
          strcmp(a->got, "pong") == 0 && strcmp(b->got, "ping") == 0))
        fprintf(stderr, "%s: a closed=%d (%u) got=%s; b closed=%d (%u) got=%s\n", loop, a->closed,
                (unsigned)a->outcome, a->got, b->closed, (unsigned)b->outcome, b->got);
    CHECK(a->closed && b->closed);
    CHECK(a->outcome == WH_RESULT_OK && b->outcome == WH_RESULT_OK);
    CHECK(strcmp(a->got, "pong") == 0 && strcmp(b->got, "ping") == 0);
    wh_free(a->w);
    wh_free(b->w);
}

static void test_select(const char *relay) {
    struct peer a, b;
    setup(relay, &a, &b, 30);
    for (int i = 0; i < 10000 && !(a.closed && b.closed); i++) {
        fd_set r;
        FD_ZERO(&r);
        if (!a.closed) FD_SET(a.fd, &r);
        if (!b.closed) FD_SET(b.fd, &r);
        struct timeval tv = {30, 0};
        int n = select((a.fd > b.fd ? a.fd : b.fd) + 1, &r, NULL, NULL, &tv);
        CHECK(n > 0);
        if (n <= 0) break;
        if (FD_ISSET(a.fd, &r)) drain(&a);
        if (FD_ISSET(b.fd, &r)) drain(&b);
    }
    finish(&a, &b, "select");
}

#ifdef WH_HAVE_LIBUV
struct uv_ctx {
    struct peer a, b;
    uv_poll_t pa, pb;
    uv_timer_t timeout;
    int timed_out;
};

static void on_uv_closed(uv_handle_t *h) { (void)h; }

static void stop_all(struct uv_ctx *c) {
    uv_close((uv_handle_t *)&c->pa, on_uv_closed);
    uv_close((uv_handle_t *)&c->pb, on_uv_closed);
    uv_close((uv_handle_t *)&c->timeout, on_uv_closed);
}

static void on_readable(uv_poll_t *h, int status, int events) {
    struct uv_ctx *c = h->data;
    CHECK(status == 0 && (events & UV_READABLE));
    drain(h == &c->pa ? &c->a : &c->b);
    if (c->a.closed && c->b.closed && !uv_is_closing((uv_handle_t *)&c->timeout)) stop_all(c);
}

static void on_timeout(uv_timer_t *t) {
    struct uv_ctx *c = t->data;
    c->timed_out = 1;
    stop_all(c);
}

static void test_libuv(const char *relay) {
    struct uv_ctx c;
    memset(&c, 0, sizeof c);
    setup(relay, &c.a, &c.b, 31);
    uv_loop_t loop;
    CHECK(uv_loop_init(&loop) == 0);
    CHECK(uv_poll_init(&loop, &c.pa, c.a.fd) == 0);
    CHECK(uv_poll_init(&loop, &c.pb, c.b.fd) == 0);
    CHECK(uv_timer_init(&loop, &c.timeout) == 0);
    c.pa.data = c.pb.data = c.timeout.data = &c;
    CHECK(uv_poll_start(&c.pa, UV_READABLE, on_readable) == 0);
    CHECK(uv_poll_start(&c.pb, UV_READABLE, on_readable) == 0);
    CHECK(uv_timer_start(&c.timeout, on_timeout, 60000, 0) == 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(!c.timed_out);
    CHECK(uv_loop_close(&loop) == 0);
    finish(&c.a, &c.b, "libuv");
}
#endif

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s RELAY_URL\n", argv[0]);
        return 2;
    }
    test_select(argv[1]);
#ifdef WH_HAVE_LIBUV
    test_libuv(argv[1]);
    printf("test_loops: select and libuv\n");
#else
    printf("test_loops: select only (built without libuv)\n");
#endif
    return h_finish("test_loops");
}
