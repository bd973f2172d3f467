/* test_dilation: Dilation through the C API (wh_dilate, wh_dilation_*, wh_subchannel_*).
 *
 *   test_dilation pair       RELAY_URL [TRANSIT_RELAY]   two C wormholes in one process
 *   test_dilation ref-server RELAY_URL CODE              the peer is the reference running
 *                                                        tests/scripts/ref_dilate.py serve
 *   test_dilation ref-client RELAY_URL CODE              ... running ref_dilate.py client
 *
 * pair: bad input first (NULL arguments, Dilation not offered, calls before wh_dilate, a
 * name listened for twice); then A (pull mode, events read with wh_next_event) and B
 * (delegate mode: its Dilation events arrive through the `dilation` callback) dilate; A
 * opens B's "echo", which B accepts on its ACCEPTABLE wake-up; records of 0, 1, 65519,
 * 65520 and 1 MiB bytes echoed whole; the write window filled until
 * WH_RESULT_WOULD_BLOCK, then the WRITABLE wake-up; 32 MiB streamed through
 * wh_subchannel_read in odd-sized pieces with a checksum; close seen as end of stream.
 *
 * ref-server: we open the reference's "echo" and check records of many sizes (empty and
 * 1 MiB included) come back whole, on 8 subchannels at once.
 * ref-client: we listen for "echo" and "late" and echo every record back until the
 * reference has checked its echoes (it then closes the wormhole).
 *
 * Exit status 0 when every check passed. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "harness.h"

#define TIMEOUT_MS 60000

static const char *APPID = "lothar.com/wormhole/dilation-c-test";

static wh_wormhole *create_dilating(const char *relay, const wh_delegate *d) {
    wh_wormhole *w = NULL;
    wh_options o = {.connect_timeout_ms = 20000, .close_timeout_ms = 5000, .dilation = true};
    wh_result r = wh_create(APPID, relay, NULL, &o, d, &w);
    if (r != WH_RESULT_OK) {
        fprintf(stderr, "wh_create: %s\n", wh_result_str(r));
        exit(1);
    }
    return w;
}

/* Pull-mode helper: wait for an event of `kind` whose subchannel id (for READABLE /
 * WRITABLE) or text (for ACCEPTABLE) matches; 0 on timeout or close. */
static int wait_ready(wh_wormhole *w, wh_event_kind kind, uint32_t id) {
    for (;;) {
        wh_event *ev = NULL;
        if (wh_next_event(w, TIMEOUT_MS, &ev) != WH_RESULT_OK) return 0;
        wh_event_kind k = wh_event_get_kind(ev);
        int hit = k == kind && (id == 0 || wh_event_subchannel_id(ev) == id);
        int closed = k == WH_EVENT_KIND_CLOSED;
        if (k == WH_EVENT_KIND_DILATION_FAILED) {
            fprintf(stderr, "dilation failed: %s\n", wh_event_text(ev));
            closed = 1;
        }
        wh_event_free(ev);
        if (hit) return 1;
        if (closed) return 0;
    }
}

/* Write one record, waiting for WRITABLE while the window is full (pull mode). */
static wh_result write_all(wh_wormhole *w, wh_subchannel *s, const uint8_t *data, size_t len) {
    for (;;) {
        wh_result r = wh_subchannel_write(s, data, len);
        if (r != WH_RESULT_WOULD_BLOCK) return r;
        if (!wait_ready(w, WH_EVENT_KIND_SUBCHANNEL_WRITABLE, wh_subchannel_id(s)))
            return WH_RESULT_TIMEOUT;
    }
}

/* Receive one whole record (caller frees with wh_bytes_free); *data NULL at the end. */
static wh_result recv_record(wh_wormhole *w, wh_subchannel *s, uint8_t **data, size_t *len) {
    for (;;) {
        wh_result r = wh_subchannel_recv(s, data, len);
        if (r != WH_RESULT_WOULD_BLOCK) return r;
        if (!wait_ready(w, WH_EVENT_KIND_SUBCHANNEL_READABLE, wh_subchannel_id(s)))
            return WH_RESULT_TIMEOUT;
    }
}

static void pattern(uint8_t *b, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(i * 31u + seed);
}

static const size_t SIZES[] = {0, 1, 5, 65509, 65510, 65519, 65520, 200000, 1u << 20, 0};
#define NSIZES (sizeof SIZES / sizeof SIZES[0])

/* ---- B, the delegate-mode side of `pair`: it echoes every record of "echo" ---------- */

struct side_b {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    wh_wormhole *w;
    wh_subchannel *echo;
    int generation, connected, closed;
    /* A record read but not yet written back (the window was full). */
    uint8_t *pending;
    size_t pending_len;
    int have_pending, ended;
};

/* Move records from "echo" back to it until it would block. Called on the dispatcher
 * thread (callbacks never run concurrently). */
static void b_pump(struct side_b *b) {
    if (!b->echo) return;
    for (;;) {
        if (b->have_pending) {
            wh_result r = wh_subchannel_write(b->echo, b->pending, b->pending_len);
            if (r == WH_RESULT_WOULD_BLOCK) return;
            CHECK_RC(r, WH_RESULT_OK);
            wh_bytes_free(b->pending, b->pending_len);
            b->have_pending = 0;
        }
        if (b->ended) return;
        uint8_t *d = NULL;
        size_t n = 0;
        wh_result r = wh_subchannel_recv(b->echo, &d, &n);
        if (r == WH_RESULT_WOULD_BLOCK) return;
        CHECK_RC(r, WH_RESULT_OK);
        if (r != WH_RESULT_OK || d == NULL) {
            /* The peer closed: close ours too. */
            b->ended = 1;
            CHECK_RC(wh_subchannel_close(b->echo), WH_RESULT_OK);
            return;
        }
        b->pending = d;
        b->pending_len = n;
        b->have_pending = 1;
    }
}

static void b_dilation(void *ud, const wh_event *ev) {
    struct side_b *b = ud;
    pthread_mutex_lock(&b->lock);
    switch (wh_event_get_kind(ev)) {
    case WH_EVENT_KIND_DILATION_GENERATION:
        b->generation = (int)wh_event_generation(ev);
        CHECK(strcmp(wh_event_text(ev), "leader") == 0 || strcmp(wh_event_text(ev), "follower") == 0);
        break;
    case WH_EVENT_KIND_DILATION_CONNECTED:
        b->connected++;
        CHECK(wh_event_generation(ev) >= 1);
        break;
    case WH_EVENT_KIND_SUBCHANNEL_ACCEPTABLE: {
        CHECK(strcmp(wh_event_text(ev), "echo") == 0);
        wh_subchannel *s = NULL;
        if (b->echo == NULL && wh_dilation_accept(b->w, "echo", &s) == WH_RESULT_OK) b->echo = s;
        break;
    }
    case WH_EVENT_KIND_SUBCHANNEL_READABLE:
    case WH_EVENT_KIND_SUBCHANNEL_WRITABLE:
        CHECK(b->echo != NULL && wh_event_subchannel_id(ev) == wh_subchannel_id(b->echo));
        break;
    default:
        break;
    }
    b_pump(b);
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

static void b_closed(void *ud, wh_result result, const char *message) {
    struct side_b *b = ud;
    (void)message;
    pthread_mutex_lock(&b->lock);
    b->closed = 1;
    CHECK_RC(result, WH_RESULT_OK);
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

static void bad_input(const char *relay) {
    /* NULLs and handles that are not live. */
    CHECK_RC(wh_dilate(NULL, NULL), WH_RESULT_NULL_ARGUMENT);
    CHECK_RC(wh_dilation_listen(NULL, "x"), WH_RESULT_NULL_ARGUMENT);
    CHECK_RC(wh_subchannel_write(NULL, (const uint8_t *)"x", 1), WH_RESULT_NULL_ARGUMENT);
    CHECK_RC(wh_subchannel_close(NULL), WH_RESULT_NULL_ARGUMENT);
    CHECK(wh_subchannel_id(NULL) == 0);
    wh_subchannel_free(NULL);
    wh_bytes_free(NULL, 0);
    CHECK(wh_event_generation(NULL) == 0);
    CHECK(wh_event_subchannel_id(NULL) == 0);

    /* Dilation not offered at wh_create. */
    wh_wormhole *plain = h_create(relay, APPID);
    CHECK_RC(wh_dilate(plain, NULL), WH_RESULT_INVALID_STATE);
    wh_free(plain);

    /* Calls before wh_dilate, a bad relay, twice, bad names. */
    wh_wormhole *w = create_dilating(relay, NULL);
    wh_subchannel *s = NULL;
    CHECK_RC(wh_dilation_listen(w, "x"), WH_RESULT_INVALID_STATE);
    CHECK_RC(wh_dilation_accept(w, "x", &s), WH_RESULT_INVALID_STATE);
    CHECK_RC(wh_dilation_connect(w, "x", &s), WH_RESULT_INVALID_STATE);
    wh_dilation_options bad = {.relay = "not a relay"};
    CHECK_RC(wh_dilate(w, &bad), WH_RESULT_INVALID_ARGUMENT);
    CHECK_RC(wh_dilate(w, NULL), WH_RESULT_OK);
    CHECK_RC(wh_dilate(w, NULL), WH_RESULT_INVALID_STATE);
    CHECK_RC(wh_dilation_listen(w, NULL), WH_RESULT_NULL_ARGUMENT);
    CHECK_RC(wh_dilation_listen(w, "\xff"), WH_RESULT_INVALID_UTF8);
    CHECK_RC(wh_dilation_listen(w, "x"), WH_RESULT_OK);
    CHECK_RC(wh_dilation_listen(w, "x"), WH_RESULT_INVALID_STATE);
    CHECK_RC(wh_dilation_accept(w, "x", NULL), WH_RESULT_NULL_ARGUMENT);
    CHECK_RC(wh_dilation_accept(w, "y", &s), WH_RESULT_INVALID_STATE);
    CHECK_RC(wh_dilation_accept(w, "x", &s), WH_RESULT_WOULD_BLOCK);
    CHECK(s == NULL);
    /* Freed with Dilation running and no peer: no thread or allocation left (valgrind). */
    wh_free(w);
}

static int run_pair(const char *relay, const char *transit) {
    bad_input(relay);

    struct side_b b = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    wh_delegate d = {.user_data = &b, .dilation = b_dilation, .closed = b_closed};
    wh_wormhole *a = create_dilating(relay, NULL);
    wh_wormhole *bw = create_dilating(relay, &d);
    b.w = bw;
    char code[64];
    h_code(code, sizeof code, 1, "purple-sausages");
    CHECK_RC(wh_set_code(a, code), WH_RESULT_OK);
    CHECK_RC(wh_set_code(bw, code), WH_RESULT_OK);
    wh_dilation_options o = {.relay = transit, .no_listen = transit != NULL, .ping_interval_ms = 5000};
    CHECK_RC(wh_dilate(a, &o), WH_RESULT_OK);
    CHECK_RC(wh_dilate(bw, &o), WH_RESULT_OK);
    CHECK_RC(wh_dilation_listen(bw, "echo"), WH_RESULT_OK);
    /* Nothing to accept yet: WOULD_BLOCK, and the ACCEPTABLE wake-up follows (B's
     * callback accepts then). */
    pthread_mutex_lock(&b.lock);
    wh_subchannel *early = NULL;
    wh_result ar = wh_dilation_accept(bw, "echo", &early);
    if (ar == WH_RESULT_OK) {
        b.echo = early;
        b_pump(&b);
    } else {
        CHECK_RC(ar, WH_RESULT_WOULD_BLOCK);
    }
    pthread_mutex_unlock(&b.lock);
    /* Wait for A's roles, then open: the OPEN may reach B before or after it listens. */
    CHECK(wait_ready(a, WH_EVENT_KIND_DILATION_GENERATION, 0));
    wh_subchannel *s = NULL;
    CHECK_RC(wh_dilation_connect(a, "echo", &s), WH_RESULT_OK);
    if (s == NULL) return h_finish("test_dilation pair");
    uint32_t id = wh_subchannel_id(s);
    CHECK(id >= 1);

    /* Records of many sizes come back whole and in order. */
    uint8_t *buf = malloc(1u << 20);
    for (size_t i = 0; i < NSIZES; i++) {
        pattern(buf, SIZES[i], (unsigned)i);
        CHECK_RC(write_all(a, s, buf, SIZES[i]), WH_RESULT_OK);
    }
    for (size_t i = 0; i < NSIZES; i++) {
        uint8_t *r = NULL;
        size_t n = 0;
        CHECK_RC(recv_record(a, s, &r, &n), WH_RESULT_OK);
        CHECK(r != NULL && n == SIZES[i]);
        pattern(buf, SIZES[i], (unsigned)i);
        if (r && n == SIZES[i]) CHECK(memcmp(r, buf, n) == 0);
        wh_bytes_free(r, n);
    }

    /* Fill the window without reading: WOULD_BLOCK, nothing lost; then drain. */
    pattern(buf, 1u << 20, 7);
    size_t written = 0;
    for (int i = 0; i < 200; i++) {
        wh_result r = wh_subchannel_write(s, buf, 1u << 20);
        if (r == WH_RESULT_WOULD_BLOCK) break;
        CHECK_RC(r, WH_RESULT_OK);
        written++;
    }
    CHECK(written >= 1 && written < 200);
    /* 32 MiB more as a stream of odd-sized reads (B echoes as it can). */
    size_t total = written << 20, got = 0;
    uint64_t sum_in = 0, sum_out = 0;
    for (size_t k = 0; k < total; k++) sum_out += buf[k % (1u << 20)];
    size_t extra = 32;
    uint8_t rd[70001];
    size_t sent_extra = 0;
    while (got < total + (extra << 20)) {
        if (sent_extra < extra) {
            wh_result r = wh_subchannel_write(s, buf, 1u << 20);
            if (r == WH_RESULT_OK) {
                sent_extra++;
                for (size_t k = 0; k < (1u << 20); k++) sum_out += buf[k];
                continue;
            }
            CHECK_RC(r, WH_RESULT_WOULD_BLOCK);
        }
        size_t n = 0;
        wh_result r = wh_subchannel_read(s, rd, sizeof rd, &n);
        if (r == WH_RESULT_WOULD_BLOCK) {
            /* Either can wake us: data to read, or room to write. */
            wh_event *ev = NULL;
            if (wh_next_event(a, TIMEOUT_MS, &ev) != WH_RESULT_OK) {
                CHECK(!"no wake-up");
                break;
            }
            wh_event_free(ev);
            continue;
        }
        CHECK_RC(r, WH_RESULT_OK);
        if (r != WH_RESULT_OK || n == 0) break;
        for (size_t k = 0; k < n; k++) sum_in += rd[k];
        got += n;
    }
    CHECK(got == total + (extra << 20));
    CHECK(sum_in == sum_out);

    /* Close: B closes back, and a read then sees the end. */
    CHECK_RC(wh_subchannel_close(s), WH_RESULT_OK);
    CHECK_RC(wh_subchannel_close(s), WH_RESULT_OK);
    for (;;) {
        size_t n = 0;
        wh_result r = wh_subchannel_read(s, rd, sizeof rd, &n);
        if (r == WH_RESULT_WOULD_BLOCK) {
            CHECK(wait_ready(a, WH_EVENT_KIND_SUBCHANNEL_READABLE, id));
            continue;
        }
        CHECK_RC(r, WH_RESULT_OK);
        CHECK(n == 0);
        break;
    }
    CHECK_RC(wh_subchannel_write(s, buf, 1), WH_RESULT_INVALID_STATE);
    wh_subchannel_free(s);
    free(buf);

    /* B's callback sees our close on its own thread, possibly after our read saw its
     * answer (core answers a CLOSE at once): wait for it, bounded. */
    struct timespec ended_by;
    clock_gettime(CLOCK_REALTIME, &ended_by);
    ended_by.tv_sec += 60;
    pthread_mutex_lock(&b.lock);
    while (!b.ended && pthread_cond_timedwait(&b.cond, &b.lock, &ended_by) == 0) {
    }
    CHECK(b.generation >= 1 && b.connected >= 1 && b.echo != NULL && b.ended);
    pthread_mutex_unlock(&b.lock);
    CHECK_RC(wh_close(a), WH_RESULT_OK);
    CHECK_RC(wh_close(bw), WH_RESULT_OK);
    wh_event *ev = h_wait_for(a, WH_EVENT_KIND_CLOSED, TIMEOUT_MS);
    CHECK(ev != NULL);
    wh_event_free(ev);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 60;
    pthread_mutex_lock(&b.lock);
    while (!b.closed && pthread_cond_timedwait(&b.cond, &b.lock, &until) == 0) {
    }
    CHECK(b.closed);
    pthread_mutex_unlock(&b.lock);
    wh_free(a);
    wh_free(bw);
    if (b.echo) wh_subchannel_free(b.echo);
    if (b.have_pending) wh_bytes_free(b.pending, b.pending_len);
    return h_finish("test_dilation pair");
}

/* ---- against the reference ------------------------------------------------------------ */

/* We open the reference's "echo" on 8 subchannels and check every record's echo. */
static int run_ref_server(const char *relay, const char *code) {
    wh_wormhole *w = create_dilating(relay, NULL);
    CHECK_RC(wh_set_code(w, code), WH_RESULT_OK);
    CHECK_RC(wh_dilate(w, NULL), WH_RESULT_OK);
    CHECK(wait_ready(w, WH_EVENT_KIND_DILATION_GENERATION, 0));
    enum { N = 8 };
    wh_subchannel *s[N] = {0};
    for (int i = 0; i < N; i++) CHECK_RC(wh_dilation_connect(w, "echo", &s[i]), WH_RESULT_OK);
    uint8_t *buf = malloc(1u << 20);
    for (int i = 0; i < N; i++) {
        if (!s[i]) continue;
        for (size_t k = 0; k < NSIZES; k++) {
            pattern(buf, SIZES[k], (unsigned)(k + 10 * i));
            CHECK_RC(write_all(w, s[i], buf, SIZES[k]), WH_RESULT_OK);
        }
    }
    for (int i = 0; i < N; i++) {
        if (!s[i]) continue;
        for (size_t k = 0; k < NSIZES; k++) {
            uint8_t *r = NULL;
            size_t n = 0;
            CHECK_RC(recv_record(w, s[i], &r, &n), WH_RESULT_OK);
            CHECK(r != NULL && n == SIZES[k]);
            pattern(buf, SIZES[k], (unsigned)(k + 10 * i));
            if (r && n == SIZES[k]) CHECK(memcmp(r, buf, n) == 0);
            wh_bytes_free(r, n);
        }
        CHECK_RC(wh_subchannel_close(s[i]), WH_RESULT_OK);
        wh_subchannel_free(s[i]);
    }
    free(buf);
    CHECK_RC(wh_close(w), WH_RESULT_OK);
    wh_event *ev = h_wait_for(w, WH_EVENT_KIND_CLOSED, TIMEOUT_MS);
    CHECK(ev != NULL);
    wh_event_free(ev);
    wh_free(w);
    return h_finish("test_dilation ref-server");
}

/* The reference opens "late" (before we listen) and "echo" subchannels; we echo every
 * record on each until the reference leaves (closes its wormhole). */
#define MAXSUB 128
static int run_ref_client(const char *relay, const char *code) {
    wh_wormhole *w = create_dilating(relay, NULL);
    CHECK_RC(wh_set_code(w, code), WH_RESULT_OK);
    CHECK_RC(wh_dilate(w, NULL), WH_RESULT_OK);
    CHECK(wait_ready(w, WH_EVENT_KIND_DILATION_CONNECTED, 0));
    /* Listen only now: the reference's OPEN of "late" was held for us. */
    CHECK_RC(wh_dilation_listen(w, "late"), WH_RESULT_OK);
    CHECK_RC(wh_dilation_listen(w, "echo"), WH_RESULT_OK);
    wh_subchannel *subs[MAXSUB] = {0};
    int nsubs = 0, late_ok = 0, echoed = 0, closed = 0;
    while (!closed) {
        /* Take every waiting subchannel, then serve every one until it would block. */
        const char *names[] = {"late", "echo"};
        for (int k = 0; k < 2; k++) {
            wh_subchannel *s = NULL;
            while (nsubs < MAXSUB && wh_dilation_accept(w, names[k], &s) == WH_RESULT_OK) {
                if (k == 0) {
                    /* "late": its record arrives; nothing is echoed. */
                    uint8_t *r = NULL;
                    size_t n = 0;
                    CHECK_RC(recv_record(w, s, &r, &n), WH_RESULT_OK);
                    const char *want = "sent before the listener";
                    CHECK(r && n == strlen(want) && memcmp(r, want, n) == 0);
                    late_ok = r && n == strlen(want) && memcmp(r, want, n) == 0;
                    wh_bytes_free(r, n);
                    wh_subchannel_free(s);
                } else {
                    subs[nsubs++] = s;
                }
            }
        }
        for (int i = 0; i < nsubs; i++) {
            for (;;) {
                uint8_t *r = NULL;
                size_t n = 0;
                wh_result rc = wh_subchannel_recv(subs[i], &r, &n);
                if (rc != WH_RESULT_OK) break;
                if (r == NULL) break; /* the reference closed it */
                /* Echo (waiting for room keeps the order). */
                CHECK_RC(write_all(w, subs[i], r, n), WH_RESULT_OK);
                wh_bytes_free(r, n);
                echoed++;
            }
        }
        wh_event *ev = NULL;
        wh_result rc = wh_next_event(w, TIMEOUT_MS, &ev);
        if (rc != WH_RESULT_OK) {
            CHECK(!"no event from the reference's side");
            break;
        }
        wh_event_kind k = wh_event_get_kind(ev);
        if (k == WH_EVENT_KIND_CLOSED) closed = 1;
        /* The reference closes its wormhole once it checked its echoes: our connection
         * drops, and we close too. */
        if (k == WH_EVENT_KIND_DILATION_RECONNECTING && nsubs > 0) CHECK_RC(wh_close(w), WH_RESULT_OK);
        wh_event_free(ev);
    }
    CHECK(late_ok);
    CHECK(nsubs >= 65); /* one echo subchannel for the sizes, then 64 at once */
    CHECK(echoed >= (int)NSIZES + 64);
    for (int i = 0; i < nsubs; i++) wh_subchannel_free(subs[i]);
    wh_free(w);
    return h_finish("test_dilation ref-client");
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "pair") == 0)
        return run_pair(argv[2], argc >= 4 ? argv[3] : NULL);
    if (argc == 4 && strcmp(argv[1], "ref-server") == 0) return run_ref_server(argv[2], argv[3]);
    if (argc == 4 && strcmp(argv[1], "ref-client") == 0) return run_ref_client(argv[2], argv[3]);
    fprintf(stderr, "usage: test_dilation pair|ref-server|ref-client RELAY_URL [CODE|TRANSIT]\n");
    return 2;
}
