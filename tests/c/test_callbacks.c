/* test_callbacks: delegate mode. Callbacks run in order on one library thread (never the
 * caller's), may call back into the API, user_data_free runs exactly once after the last
 * callback; free with callbacks pending; free from inside a callback.
 *
 *   test_callbacks RELAY_URL
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <time.h>

#include "harness.h"

#define APPID "example.com/wormhole/c-tests"

struct side {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char log[256];          /* one letter per callback, in call order */
    int closed;             /* closed callback seen */
    wh_result outcome;
    int frees;              /* user_data_free calls */
    int after_free;         /* callbacks after user_data_free (must stay 0) */
    pthread_t thread;       /* the dispatcher thread seen by the first callback */
    int thread_set, other_thread;
    wh_wormhole *w;         /* set before any callback needs it */
    int free_in;            /* 'm': wh_free from got_message */
    int slow_ms;            /* sleep in each callback */
    char received[64];
};

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void note(struct side *s, char c) {
    pthread_mutex_lock(&s->lock);
    size_t n = strlen(s->log);
    if (n + 1 < sizeof s->log) s->log[n] = c;
    if (s->frees) s->after_free++;
    if (!s->thread_set) {
        s->thread = pthread_self();
        s->thread_set = 1;
    } else if (!pthread_equal(s->thread, pthread_self())) {
        s->other_thread = 1;
    }
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (s->slow_ms) sleep_ms(s->slow_ms);
}

static void on_welcome(void *ud, const char *json) { CHECK(json && json[0] == '{'); note(ud, 'W'); }
static void on_code(void *ud, const char *code) { CHECK(code != NULL); note(ud, 'C'); }
static void on_key(void *ud, const uint8_t *k, size_t len) { CHECK(k && len == 32); note(ud, 'K'); }
static void on_verifier(void *ud, const uint8_t *v, size_t len) {
    struct side *s = ud;
    CHECK(v && len == 32);
    /* Calling back into the API from a callback. */
    uint8_t key[16];
    CHECK_RC(wh_derive_key(s->w, "from a callback", key, sizeof key), WH_RESULT_OK);
    note(ud, 'V');
}
static void on_versions(void *ud, const char *json) { CHECK(json != NULL); note(ud, 'S'); }
static void on_message(void *ud, const uint8_t *data, size_t len) {
    struct side *s = ud;
    snprintf(s->received, sizeof s->received, "%.*s", (int)len, (const char *)data);
    note(ud, 'M');
    if (s->free_in == 'm') {
        wh_free(s->w); /* free from inside a callback: must not deadlock */
        return;
    }
    CHECK_RC(wh_close(s->w), WH_RESULT_OK);
}
static void on_closed(void *ud, wh_result r, const char *msg) {
    struct side *s = ud;
    CHECK(msg != NULL);
    note(ud, 'X');
    pthread_mutex_lock(&s->lock);
    s->closed = 1;
    s->outcome = r;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}
static void on_free(void *ud) {
    struct side *s = ud;
    pthread_mutex_lock(&s->lock);
    s->frees++;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void side_init(struct side *s) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
}

static void side_destroy(struct side *s) {
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
}

static wh_delegate delegate_for(struct side *s) {
    wh_delegate d;
    memset(&d, 0, sizeof d);
    d.user_data = s;
    d.user_data_free = on_free;
    d.got_welcome = on_welcome;
    d.got_code = on_code;
    d.got_unverified_key = on_key;
    d.got_verifier = on_verifier;
    d.got_versions = on_versions;
    d.got_message = on_message;
    d.closed = on_closed;
    return d;
}

/* Wait until `field` becomes non-zero (or 30 s). */
#define WAIT_FOR(s, field)                                                             \
    do {                                                                               \
        struct timespec dl;                                                            \
        clock_gettime(CLOCK_REALTIME, &dl);                                            \
        dl.tv_sec += 30;                                                               \
        pthread_mutex_lock(&(s)->lock);                                                \
        while (!(s)->field)                                                            \
            if (pthread_cond_timedwait(&(s)->cond, &(s)->lock, &dl) != 0) break;       \
        pthread_mutex_unlock(&(s)->lock);                                              \
        CHECK((s)->field);                                                             \
    } while (0)

static void test_order_and_threads(const char *relay) {
    struct side a, b;
    side_init(&a);
    side_init(&b);
    wh_delegate da = delegate_for(&a), db = delegate_for(&b);
    CHECK_RC(wh_create(APPID, relay, NULL, NULL, &da, &a.w), WH_RESULT_OK);
    CHECK_RC(wh_create(APPID, relay, NULL, NULL, &db, &b.w), WH_RESULT_OK);
    /* Pull calls on a delegate handle are refused. */
    wh_event *ev = NULL;
    int fd;
    CHECK_RC(wh_next_event(a.w, 0, &ev), WH_RESULT_INVALID_STATE);
    CHECK_RC(wh_event_fd(a.w, &fd), WH_RESULT_INVALID_STATE);
    char code[64];
    h_code(code, sizeof code, 10, "ordered-callbacks");
    CHECK_RC(wh_set_code(a.w, code), WH_RESULT_OK);
    CHECK_RC(wh_set_code(b.w, code), WH_RESULT_OK);
    CHECK_RC(wh_send(a.w, (const uint8_t *)"to b", 4), WH_RESULT_OK);
    CHECK_RC(wh_send(b.w, (const uint8_t *)"to a", 4), WH_RESULT_OK);
    WAIT_FOR(&a, closed);
    WAIT_FOR(&b, closed);
    CHECK(a.outcome == WH_RESULT_OK && b.outcome == WH_RESULT_OK);
    CHECK(strcmp(a.received, "to a") == 0 && strcmp(b.received, "to b") == 0);
    /* Order: code before key before verifier before message; closed last. */
    struct side *sides[2] = {&a, &b};
    for (int i = 0; i < 2; i++) {
        const char *log = sides[i]->log;
        const char *c = strchr(log, 'C'), *k = strchr(log, 'K'), *v = strchr(log, 'V'),
                   *m = strchr(log, 'M'), *x = strchr(log, 'X');
        CHECK(c && k && v && m && x && c < k && k < v && v < m && m < x);
        CHECK(x && x[1] == '\0');
        CHECK(strchr(log, 'W') && strchr(log, 'S'));
        CHECK(sides[i]->thread_set && !sides[i]->other_thread);
        CHECK(!pthread_equal(sides[i]->thread, pthread_self()));
        CHECK(sides[i]->frees == 0);
    }
    CHECK(!pthread_equal(a.thread, b.thread)); /* one dispatcher per handle */
    wh_free(a.w);
    CHECK(a.frees == 1);
    wh_free(b.w);
    CHECK(b.frees == 1 && a.after_free == 0 && b.after_free == 0);
    side_destroy(&a);
    side_destroy(&b);
}

/* wh_free from inside got_message: teardown finishes on the dispatcher thread. */
static void test_free_inside_callback(const char *relay) {
    struct side a, b;
    side_init(&a);
    side_init(&b);
    a.free_in = 'm';
    wh_delegate da = delegate_for(&a), db = delegate_for(&b);
    CHECK_RC(wh_create(APPID, relay, NULL, NULL, &da, &a.w), WH_RESULT_OK);
    CHECK_RC(wh_create(APPID, relay, NULL, NULL, &db, &b.w), WH_RESULT_OK);
    char code[64];
    h_code(code, sizeof code, 11, "free-inside");
    CHECK_RC(wh_set_code(a.w, code), WH_RESULT_OK);
    CHECK_RC(wh_set_code(b.w, code), WH_RESULT_OK);
    CHECK_RC(wh_send(b.w, (const uint8_t *)"bye", 3), WH_RESULT_OK);
    CHECK_RC(wh_send(a.w, (const uint8_t *)"hi", 2), WH_RESULT_OK);
    WAIT_FOR(&a, frees); /* user_data_free comes after the teardown */
    CHECK(a.frees == 1 && a.closed == 0 && a.after_free == 0);
    /* b closes when a's message arrives; close it anyway in case a was gone first. */
    CHECK_RC(wh_close(b.w), WH_RESULT_OK);
    WAIT_FOR(&b, closed);
    wh_free(b.w);
    CHECK(b.frees == 1);
    side_destroy(&a);
    side_destroy(&b);
}

/* wh_free while callbacks are pending (slow callbacks, events queued behind them). */
static void test_free_with_callbacks_pending(const char *relay) {
    struct side a;
    side_init(&a);
    a.slow_ms = 200;
    wh_delegate da = delegate_for(&a);
    CHECK_RC(wh_create(APPID, relay, NULL, NULL, &da, &a.w), WH_RESULT_OK);
    char code[64];
    h_code(code, sizeof code, 12, "pending-callbacks");
    CHECK_RC(wh_set_code(a.w, code), WH_RESULT_OK);
    /* Wait for the first callback to start, then free while it sleeps. */
    WAIT_FOR(&a, thread_set);
    wh_free(a.w);
    CHECK(a.frees == 1);
    size_t n = strlen(a.log);
    sleep_ms(300);
    CHECK(strlen(a.log) == n); /* nothing ran after wh_free returned */
    CHECK(a.after_free == 0);
    side_destroy(&a);

    /* Free right after create, before any event. */
    side_init(&a);
    da = delegate_for(&a);
    CHECK_RC(wh_create(APPID, relay, NULL, NULL, &da, &a.w), WH_RESULT_OK);
    wh_free(a.w);
    CHECK(a.frees == 1);
    side_destroy(&a);

    /* A failed create still releases user_data, once. */
    side_init(&a);
    da = delegate_for(&a);
    wh_wormhole *w = NULL;
    CHECK_RC(wh_create(APPID, "not a url", NULL, NULL, &da, &w), WH_RESULT_INVALID_ARGUMENT);
    CHECK(w == NULL && a.frees == 1);
    side_destroy(&a);

    /* A delegate whose callbacks are all NULL. */
    wh_delegate empty;
    memset(&empty, 0, sizeof empty);
    CHECK_RC(wh_create(APPID, relay, NULL, NULL, &empty, &w), WH_RESULT_OK);
    CHECK_RC(wh_allocate_code(w, 2), WH_RESULT_OK);
    wh_free(w);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s RELAY_URL\n", argv[0]);
        return 2;
    }
    test_order_and_threads(argv[1]);
    test_free_inside_callback(argv[1]);
    test_free_with_callbacks_pending(argv[1]);
    return h_finish("test_callbacks");
}
