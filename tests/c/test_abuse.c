/* The C ABI under abuse: a property test that generates random call sequences (fixed
 * seeds, so a failure is reproducible with `test_abuse URL SEED`) over a pool of handles
 * that are created, used, freed and then used again; arguments are NULL, invalid UTF-8,
 * over-long, or random bytes. Every call must return a documented result code:
 *  - a freed handle gives WH_RESULT_INVALID_HANDLE, and freeing it again does nothing;
 *  - a forged handle (a number that never came from wh_create) gives the same;
 *  - NULL gives WH_RESULT_NULL_ARGUMENT, bad UTF-8 WH_RESULT_INVALID_UTF8;
 *  - nothing crashes, leaks or touches freed memory (run under ASan+UBSan and valgrind).
 * A second part calls one handle from several threads while another thread frees it.
 *
 *   test_abuse MAILBOX_URL [SEED [SEQUENCES]] */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "harness.h"

#define POOL 4
#define STEPS 40

static uint64_t rng_state;
static uint64_t rnd(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}
static unsigned below(unsigned n) { return (unsigned)(rnd() % n); }

static int known_code(wh_result r) { return r <= 18 || (r >= 100 && r <= 106); }

/* A string argument: NULL, empty, a valid code, invalid UTF-8, over-long, or random. */
static const char *nasty_string(char *buf, size_t cap) {
    switch (below(7)) {
    case 0: return NULL;
    case 1: return "";
    case 2: return "7-purple-sausages";
    case 3: return "\xff\xfe-bad-utf8";
    case 4: { /* 64 KiB of letters */
        size_t n = cap - 1;
        memset(buf, 'a', n);
        buf[n] = 0;
        return buf;
    }
    case 5: return "12-\xe2\x82";
    default: {
        size_t n = below(40);
        for (size_t i = 0; i < n; i++) buf[i] = (char)(1 + below(255));
        buf[n] = 0;
        return buf;
    }
    }
}

struct slot {
    wh_wormhole *w;    /* live handle, or NULL */
    wh_wormhole *dead; /* a handle that was freed here */
};

static wh_wormhole *pick(struct slot *pool, int *is_dead) {
    struct slot *s = &pool[below(POOL)];
    *is_dead = 0;
    switch (below(8)) {
    case 0: return NULL;
    case 1: *is_dead = 1; return (wh_wormhole *)(uintptr_t)0x1000; /* forged */
    case 2:
        if (s->dead) { *is_dead = 1; return s->dead; }
        return s->w;
    default: return s->w;
    }
}

static void check_rc(wh_result r, wh_wormhole *w, int is_dead, const char *what) {
    CHECK(known_code(r));
    CHECK(wh_result_str(r) != NULL);
    if (w == NULL) {
        if (r != WH_RESULT_NULL_ARGUMENT && r != WH_RESULT_OK) {
            fprintf(stderr, "%s(NULL) -> %u\n", what, (unsigned)r);
            CHECK(r == WH_RESULT_NULL_ARGUMENT);
        }
    } else if (is_dead && r != WH_RESULT_INVALID_HANDLE && r != WH_RESULT_NULL_ARGUMENT) {
        fprintf(stderr, "%s(freed handle) -> %u (%s)\n", what, (unsigned)r, wh_result_str(r));
        CHECK(r == WH_RESULT_INVALID_HANDLE);
    }
}

static void one_sequence(const char *relay, uint64_t seed) {
    static char buf[65536];
    struct slot pool[POOL];
    memset(pool, 0, sizeof pool);
    rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (int step = 0; step < STEPS; step++) {
        int dead = 0;
        wh_wormhole *w = pick(pool, &dead);
        wh_result r = WH_RESULT_OK;
        switch (below(14)) {
        case 0: { /* create into an empty slot (or a NULL/bad argument) */
            struct slot *s = &pool[below(POOL)];
            if (s->w) break;
            const char *app = below(4) ? "example.com/abuse" : nasty_string(buf, sizeof buf);
            const char *url = below(5) ? relay : nasty_string(buf, sizeof buf);
            const char *versions = below(3) ? NULL : (below(2) ? "{\"x\": 1}" : "[oops");
            wh_options o = {.connect_timeout_ms = 2000, .close_timeout_ms = 1000};
            wh_wormhole *out = NULL;
            r = wh_create(app, url, versions, below(2) ? &o : NULL, NULL, &out);
            CHECK(known_code(r));
            CHECK((r == WH_RESULT_OK) == (out != NULL));
            if (out) s->w = out;
            break;
        }
        case 1: { /* free a live handle, or one already freed (must do nothing) */
            struct slot *s = &pool[below(POOL)];
            if (s->w) {
                wh_free(s->w);
                s->dead = s->w;
                s->w = NULL;
            } else if (s->dead) {
                wh_free(s->dead);
            }
            break;
        }
        case 2: r = wh_allocate_code(w, below(40)); check_rc(r, w, dead, "wh_allocate_code"); break;
        case 3: {
            const char *c = nasty_string(buf, sizeof buf);
            r = wh_set_code(w, c);
            if (c != NULL) check_rc(r, w, dead, "wh_set_code");
            else CHECK(r == WH_RESULT_NULL_ARGUMENT || (dead && r == WH_RESULT_INVALID_HANDLE));
            break;
        }
        case 4: r = wh_input_code(w); check_rc(r, w, dead, "wh_input_code"); break;
        case 5: {
            char **list = NULL;
            r = wh_input_word_completions(w, below(2) ? "pur" : nasty_string(buf, sizeof buf), &list);
            CHECK(known_code(r));
            CHECK((r == WH_RESULT_OK) == (list != NULL));
            wh_string_array_free(list);
            break;
        }
        case 6: {
            size_t n = below(3) == 0 ? 0 : below(4096);
            for (size_t i = 0; i < n; i++) buf[i] = (char)rnd();
            r = wh_send(w, below(8) ? (const uint8_t *)buf : NULL, n);
            if (n > 0 || below(8)) check_rc(r, w, dead, "wh_send");
            break;
        }
        case 7: {
            const char *t = nasty_string(buf, sizeof buf);
            r = wh_send_text(w, t);
            if (t) check_rc(r, w, dead, "wh_send_text");
            break;
        }
        case 8: {
            uint8_t key[64];
            size_t len = below(80);
            r = wh_derive_key(w, below(4) ? "purpose" : nasty_string(buf, sizeof buf),
                              len <= sizeof key ? key : NULL, len);
            CHECK(known_code(r));
            break;
        }
        case 9: r = wh_close(w); check_rc(r, w, dead, "wh_close"); break;
        case 10: r = wh_cancel(w); check_rc(r, w, dead, "wh_cancel"); break;
        case 11: {
            int fd = -1;
            r = wh_event_fd(w, &fd);
            check_rc(r, w, dead, "wh_event_fd");
            CHECK((r == WH_RESULT_OK) == (fd >= 0));
            break;
        }
        case 12: {
            wh_event *ev = NULL;
            r = wh_next_event(w, (int)below(3), &ev);
            check_rc(r, w, dead, "wh_next_event");
            CHECK((r == WH_RESULT_OK) == (ev != NULL));
            if (ev) {
                CHECK(wh_event_get_kind(ev) != WH_EVENT_KIND_NONE);
                (void)wh_event_text(ev);
                (void)wh_event_data(ev);
                (void)wh_event_len(ev);
                wh_event_free(ev);
            }
            break;
        }
        default: CHECK(wh_result_str((uint32_t)rnd()) != NULL); break;
        }
    }
    for (int i = 0; i < POOL; i++) {
        wh_free(pool[i].w);
        wh_free(pool[i].w); /* twice: nothing happens */
        if (pool[i].w) CHECK_RC(wh_close(pool[i].w), WH_RESULT_INVALID_HANDLE);
    }
}

/* ---- one handle, many threads, freed under them ------------------------------------ */

static wh_wormhole *shared;
static atomic_int stop_flag;

static void *caller(void *arg) {
    (void)arg;
    while (!atomic_load(&stop_flag)) {
        wh_result r = wh_send_text(shared, "hello");
        CHECK(known_code(r));
        wh_event *ev = NULL;
        r = wh_next_event(shared, 0, &ev);
        CHECK(known_code(r));
        if (ev) wh_event_free(ev);
        r = wh_cancel(shared);
        CHECK(known_code(r));
    }
    /* Freed by now: every call is refused. */
    CHECK_RC(wh_send_text(shared, "late"), WH_RESULT_INVALID_HANDLE);
    return NULL;
}

static void freed_under_threads(const char *relay) {
    shared = h_create(relay, "example.com/abuse-threads");
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, caller, NULL);
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
    wh_free(shared);
    atomic_store(&stop_flag, 1);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    wh_free(shared);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MAILBOX_URL [SEED [SEQUENCES]]\n", argv[0]);
        return 2;
    }
    uint64_t first = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
    int n = argc > 3 ? atoi(argv[3]) : (argc > 2 ? 1 : 60);
    for (int i = 0; i < n; i++) one_sequence(argv[1], first + (uint64_t)i);
    freed_under_threads(argv[1]);
    return h_finish("test_abuse");
}
