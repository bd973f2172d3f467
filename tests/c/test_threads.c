/* test_threads: many wormholes at once on many threads. Each thread runs one pair (pull
 * mode for one side, a shared handle polled by two threads for the other), exchanges a
 * message and closes happily.
 *
 *   test_threads RELAY_URL [THREADS]
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "harness.h"

#define APPID "example.com/wormhole/c-tests-threads"

struct job {
    const char *relay;
    unsigned n;
    int ok;
};

static void *run_pair(void *arg) {
    struct job *j = arg;
    char code[64];
    h_code(code, sizeof code, 20 + j->n, "thread-pair");
    wh_wormhole *a = h_create(j->relay, APPID), *b = h_create(j->relay, APPID);
    CHECK_RC(wh_set_code(a, code), WH_RESULT_OK);
    CHECK_RC(wh_set_code(b, code), WH_RESULT_OK);
    char msg[32];
    snprintf(msg, sizeof msg, "pair %u", j->n);
    CHECK_RC(wh_send(a, (const uint8_t *)msg, strlen(msg)), WH_RESULT_OK);
    wh_event *ev = h_wait_for(b, WH_EVENT_KIND_MESSAGE, 90000);
    if (ev && wh_event_get_kind(ev) == WH_EVENT_KIND_CLOSED)
        fprintf(stderr, "pair %u: b closed before the message: %s (%s)\n", j->n,
                wh_result_str(wh_event_result(ev)), wh_event_text(ev) ? wh_event_text(ev) : "no text");
    int got = ev && wh_event_get_kind(ev) == WH_EVENT_KIND_MESSAGE && wh_event_len(ev) == strlen(msg) &&
              memcmp(wh_event_data(ev), msg, strlen(msg)) == 0;
    CHECK(got);
    wh_event_free(ev);
    CHECK_RC(wh_close(a), WH_RESULT_OK);
    CHECK_RC(wh_close(b), WH_RESULT_OK);
    wh_event *ca = h_wait_for(a, WH_EVENT_KIND_CLOSED, 90000);
    wh_event *cb = h_wait_for(b, WH_EVENT_KIND_CLOSED, 90000);
    int happy = ca && cb && wh_event_result(ca) == WH_RESULT_OK && wh_event_result(cb) == WH_RESULT_OK;
    CHECK(happy);
    wh_event_free(ca);
    wh_event_free(cb);
    wh_free(a);
    wh_free(b);
    j->ok = got && happy;
    return NULL;
}

/* Several threads calling into one handle at once. */
struct shared {
    wh_wormhole *w;
    int sent;
};

static void *hammer(void *arg) {
    struct shared *s = arg;
    for (int i = 0; i < 50; i++) {
        CHECK_RC(wh_send(s->w, (const uint8_t *)"x", 1), WH_RESULT_OK);
        uint8_t key[8];
        wh_result r = wh_derive_key(s->w, "p", key, sizeof key);
        CHECK(r == WH_RESULT_OK || r == WH_RESULT_NO_KEY);
        wh_event *ev = NULL;
        if (wh_next_event(s->w, 0, &ev) == WH_RESULT_OK) wh_event_free(ev);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s RELAY_URL [THREADS]\n", argv[0]);
        return 2;
    }
    unsigned n = argc > 2 ? (unsigned)atoi(argv[2]) : 8;
    if (n == 0 || n > 64) n = 8;
    pthread_t t[64];
    struct job jobs[64];
    for (unsigned i = 0; i < n; i++) {
        jobs[i] = (struct job){argv[1], i, 0};
        CHECK(pthread_create(&t[i], NULL, run_pair, &jobs[i]) == 0);
    }
    /* Meanwhile: four threads hammer one shared handle. */
    struct shared s = {h_create(argv[1], APPID), 0};
    char code[64];
    h_code(code, sizeof code, 19, "shared-handle");
    CHECK_RC(wh_set_code(s.w, code), WH_RESULT_OK);
    pthread_t h[4];
    for (int i = 0; i < 4; i++) CHECK(pthread_create(&h[i], NULL, hammer, &s) == 0);
    for (int i = 0; i < 4; i++) pthread_join(h[i], NULL);
    wh_free(s.w);
    unsigned ok = 0;
    for (unsigned i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        ok += (unsigned)jobs[i].ok;
    }
    CHECK(ok == n);
    printf("test_threads: %u of %u pairs ok\n", ok, n);
    return h_finish("test_threads");
}
