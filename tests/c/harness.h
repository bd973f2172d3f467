/* A tiny harness shared by the C tests: checks that count failures, and pull-mode
 * helpers. Every test program takes the mailbox URL as argv[1] and exits non-zero on any
 * failed check. */
#ifndef WH_TEST_HARNESS_H
#define WH_TEST_HARNESS_H

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wormhole.h"

static atomic_int h_checks;
static atomic_int h_failures;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        atomic_fetch_add(&h_checks, 1);                                                \
        if (!(cond)) {                                                                 \
            atomic_fetch_add(&h_failures, 1);                                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
        }                                                                              \
    } while (0)

#define CHECK_RC(expr, expected)                                                       \
    do {                                                                               \
        wh_result h_rc_ = (expr);                                                      \
        atomic_fetch_add(&h_checks, 1);                                                \
        if (h_rc_ != (wh_result)(expected)) {                                          \
            atomic_fetch_add(&h_failures, 1);                                          \
            fprintf(stderr, "%s:%d: %s returned %u (%s), expected %s\n", __FILE__,      \
                    __LINE__, #expr, (unsigned)h_rc_, wh_result_str(h_rc_), #expected); \
        }                                                                              \
    } while (0)

/* A nameplate unlikely to collide with other programs using the same server. */
static inline unsigned h_nameplate(unsigned n) {
    return 1000u + ((unsigned)getpid() % 20000u) * 50u + n;
}

static inline void h_code(char *buf, size_t len, unsigned n, const char *words) {
    snprintf(buf, len, "%u-%s", h_nameplate(n), words);
}

/* Pull events until one of `kind` (returned, caller frees) or `closed` (returned too, so
 * the caller sees the outcome). NULL on timeout. Other events are freed. */
static inline wh_event *h_wait_for(wh_wormhole *w, wh_event_kind kind, int timeout_ms) {
    for (;;) {
        wh_event *ev = NULL;
        wh_result r = wh_next_event(w, timeout_ms, &ev);
        if (r != WH_RESULT_OK) {
            fprintf(stderr, "h_wait_for(%u): %s\n", (unsigned)kind, wh_result_str(r));
            return NULL;
        }
        wh_event_kind k = wh_event_get_kind(ev);
        if (k == kind || k == WH_EVENT_KIND_CLOSED) return ev;
        wh_event_free(ev);
    }
}

/* Create a pull-mode wormhole or fail the test. */
static inline wh_wormhole *h_create(const char *relay, const char *appid) {
    wh_wormhole *w = NULL;
    wh_options o = {.connect_timeout_ms = 20000, .close_timeout_ms = 5000};
    wh_result r = wh_create(appid, relay, NULL, &o, NULL, &w);
    if (r != WH_RESULT_OK) {
        fprintf(stderr, "wh_create: %s\n", wh_result_str(r));
        exit(1);
    }
    return w;
}

static inline int h_finish(const char *name) {
    int f = atomic_load(&h_failures), c = atomic_load(&h_checks);
    printf("%s: %d checks, %d failed\n", name, c, f);
    return f == 0 ? 0 : 1;
}

#endif
