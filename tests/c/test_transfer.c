/* test_transfer: file transfer through the C API, C to C through a mailbox server on
 * 127.0.0.1 (Transit direct on loopback): a file, an empty file, a directory with nested and
 * empty folders, a rejected offer, a refused overwrite, cancellation mid-transfer on either
 * side (no partial file is left), text offered instead of a file, the delegate callbacks, and
 * the argument errors.
 *
 *   test_transfer RELAY_URL [TRANSIT_RELAY]
 *
 * With TRANSIT_RELAY ("tcp:127.0.0.1:PORT") a file also goes through that relay, neither
 * side listening.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>

#include "harness.h"

static char g_tmp[256];

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Write `size` bytes of a pattern that depends on `seed`. */
static int write_file(const char *path, size_t size, unsigned seed) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    static unsigned char buf[65536];
    size_t done = 0;
    unsigned x = seed * 2654435761u + 1u;
    while (done < size) {
        size_t n = size - done < sizeof buf ? size - done : sizeof buf;
        for (size_t i = 0; i < n; i++) {
            x = x * 1103515245u + 12345u;
            buf[i] = (unsigned char)(x >> 16);
        }
        if (fwrite(buf, 1, n, f) != n) {
            fclose(f);
            return -1;
        }
        done += n;
    }
    return fclose(f);
}

/* 1 when the two files have the same bytes. */
static int same_file(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) same = 0;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

/* Number of entries in a directory (without . and ..), -1 if it cannot be read. */
static int dir_entries(const char *path) {
    DIR *d = opendir(path);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
    }
    closedir(d);
    return n;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) ? (long)st.st_size : -1;
}

enum action { ACCEPT, REJECT, CANCEL_RECEIVER, CANCEL_SENDER };

struct outcome {
    /* receiver */
    int offers;
    char offer_name[256];
    wh_offer_kind offer_kind;
    uint64_t offer_size;
    int recv_done;
    wh_result received;
    char saved[512];
    /* both: progress events and the last one */
    int progress_s, progress_r;
    uint64_t last_done_s, last_total_s, last_done_r, last_total_r;
    int progress_order_ok;
    /* sender */
    int sent_done;
    wh_result sent;
    char sent_msg[256];
    wh_result closed_s, closed_r;
};

/* Drain the events waiting on one side (pull mode). */
static void pump_side(wh_wormhole *w, int is_sender, enum action action, const char *dest,
                      int overwrite, struct outcome *o, int *closed) {
    for (;;) {
        wh_event *ev = NULL;
        if (wh_next_event(w, 0, &ev) != WH_RESULT_OK) return;
        wh_event_kind k = wh_event_get_kind(ev);
        if (k == WH_EVENT_KIND_FILE_OFFER && !is_sender) {
            o->offers++;
            snprintf(o->offer_name, sizeof o->offer_name, "%s", wh_event_text(ev));
            o->offer_kind = wh_event_offer_kind(ev);
            o->offer_size = wh_event_bytes_total(ev);
            if (action == REJECT) {
                CHECK_RC(wh_reject_offer(w), WH_RESULT_OK);
                CHECK_RC(wh_reject_offer(w), WH_RESULT_INVALID_STATE);
            } else {
                CHECK_RC(wh_accept_offer(w, dest, overwrite), WH_RESULT_OK);
                CHECK_RC(wh_accept_offer(w, dest, overwrite), WH_RESULT_INVALID_STATE);
            }
        } else if (k == WH_EVENT_KIND_TRANSFER_PROGRESS) {
            uint64_t done = wh_event_bytes_done(ev), total = wh_event_bytes_total(ev);
            uint64_t *last = is_sender ? &o->last_done_s : &o->last_done_r;
            if (done < *last || done > total) o->progress_order_ok = 0;
            *last = done;
            if (is_sender) {
                o->progress_s++;
                o->last_total_s = total;
                if (action == CANCEL_SENDER && done > 0 && done < total) {
                    CHECK_RC(wh_cancel_transfer(w), WH_RESULT_OK);
                }
            } else {
                o->progress_r++;
                o->last_total_r = total;
                if (action == CANCEL_RECEIVER && done > 0 && done < total) {
                    CHECK_RC(wh_cancel_transfer(w), WH_RESULT_OK);
                }
            }
        } else if (k == WH_EVENT_KIND_FILE_SENT) {
            CHECK(is_sender);
            o->sent_done++;
            o->sent = wh_event_result(ev);
            snprintf(o->sent_msg, sizeof o->sent_msg, "%s", wh_event_text(ev));
            wh_close(w);
        } else if (k == WH_EVENT_KIND_FILE_RECEIVED) {
            CHECK(!is_sender);
            o->recv_done++;
            o->received = wh_event_result(ev);
            snprintf(o->saved, sizeof o->saved, "%s", wh_event_text(ev));
            wh_close(w);
        } else if (k == WH_EVENT_KIND_CLOSED) {
            *closed = 1;
            if (is_sender) o->closed_s = wh_event_result(ev);
            else o->closed_r = wh_event_result(ev);
        }
        wh_event_free(ev);
    }
}

/* Send `path` from one wormhole to another in this process; the receiver acts on the
 * offer per `action`, saving into `dest`. Both close after their completion. */
static void run_pair(const char *relay, unsigned n, const char *path, const char *dest,
                     enum action action, int overwrite, const wh_transfer_options *so,
                     const wh_transfer_options *ro, struct outcome *o) {
    memset(o, 0, sizeof *o);
    o->progress_order_ok = 1;
    o->sent = o->received = WH_RESULT_PANIC;
    wh_wormhole *s = h_create(relay, WH_TRANSFER_APPID), *r = h_create(relay, WH_TRANSFER_APPID);
    char code[64];
    h_code(code, sizeof code, n, "file-transfer");
    CHECK_RC(wh_set_code(s, code), WH_RESULT_OK);
    CHECK_RC(wh_set_code(r, code), WH_RESULT_OK);
    CHECK_RC(wh_receive_file(r, ro), WH_RESULT_OK);
    CHECK_RC(wh_send_file(s, path, so), WH_RESULT_OK);
    int closed_s = 0, closed_r = 0;
    double deadline = now_s() + 240;
    while ((!closed_s || !closed_r) && now_s() < deadline) {
        pump_side(s, 1, action, dest, overwrite, o, &closed_s);
        pump_side(r, 0, action, dest, overwrite, o, &closed_r);
        sleep_ms(2);
    }
    CHECK(closed_s && closed_r);
    CHECK(o->sent_done == 1);
    CHECK(o->recv_done == 1);
    CHECK(o->progress_order_ok);
    wh_free(s);
    wh_free(r);
}

static void test_file(const char *relay) {
    char src[320], dest[320], want[400];
    snprintf(src, sizeof src, "%s/in/data.bin", g_tmp);
    snprintf(dest, sizeof dest, "%s/out1", g_tmp);
    snprintf(want, sizeof want, "%s/data.bin", dest);
    CHECK(mkdir(dest, 0700) == 0);
    /* The receiver does not listen: the sender's listener carries the connection. */
    wh_transfer_options ro = {0};
    ro.no_listen = true;
    ro.progress_interval_ms = 1;
    struct outcome o;
    run_pair(relay, 1, src, dest, ACCEPT, 0, NULL, &ro, &o);
    CHECK(o.offers == 1);
    CHECK(strcmp(o.offer_name, "data.bin") == 0);
    CHECK(o.offer_kind == WH_OFFER_KIND_FILE);
    CHECK(o.offer_size == (3u << 20));
    CHECK_RC(o.sent, WH_RESULT_OK);
    CHECK_RC(o.received, WH_RESULT_OK);
    CHECK(strcmp(o.saved, want) == 0);
    CHECK(same_file(src, want));
    CHECK(dir_entries(dest) == 1); /* no temporary file left */
    CHECK(o.progress_s >= 1 && o.progress_r >= 1);
    CHECK(o.last_done_s == (3u << 20) && o.last_total_s == (3u << 20));
    CHECK(o.last_done_r == (3u << 20) && o.last_total_r == (3u << 20));
    CHECK_RC(o.closed_s, WH_RESULT_OK);
    CHECK_RC(o.closed_r, WH_RESULT_OK);

    /* The same again into the existing file: refused without overwrite (both sides get
     * TRANSFER and nothing changes), accepted with it. */
    run_pair(relay, 2, src, want, ACCEPT, 0, NULL, NULL, &o);
    CHECK_RC(o.received, WH_RESULT_TRANSFER);
    CHECK_RC(o.sent, WH_RESULT_TRANSFER);
    CHECK(same_file(src, want));
    run_pair(relay, 3, src, want, ACCEPT, 1, NULL, NULL, &o);
    CHECK_RC(o.received, WH_RESULT_OK);
    CHECK_RC(o.sent, WH_RESULT_OK);
    CHECK(same_file(src, want));
    CHECK(dir_entries(dest) == 1);
}

static void test_empty_file(const char *relay) {
    char src[320], dest[320], want[400];
    snprintf(src, sizeof src, "%s/in/empty.txt", g_tmp);
    snprintf(dest, sizeof dest, "%s/out2", g_tmp);
    snprintf(want, sizeof want, "%s/renamed.txt", dest);
    CHECK(write_file(src, 0, 2) == 0);
    CHECK(mkdir(dest, 0700) == 0);
    struct outcome o;
    /* A destination that does not exist is the exact path to create. */
    run_pair(relay, 4, src, want, ACCEPT, 0, NULL, NULL, &o);
    CHECK(o.offer_kind == WH_OFFER_KIND_FILE);
    CHECK(o.offer_size == 0);
    CHECK_RC(o.sent, WH_RESULT_OK);
    CHECK_RC(o.received, WH_RESULT_OK);
    CHECK(strcmp(o.saved, want) == 0);
    CHECK(file_size(want) == 0);
    CHECK(dir_entries(dest) == 1);
}

static void test_directory(const char *relay) {
    char p[400], dest[320];
    snprintf(p, sizeof p, "%s/in/tree", g_tmp);
    CHECK(mkdir(p, 0700) == 0);
    snprintf(p, sizeof p, "%s/in/tree/sub", g_tmp);
    CHECK(mkdir(p, 0700) == 0);
    snprintf(p, sizeof p, "%s/in/tree/sub/deeper", g_tmp);
    CHECK(mkdir(p, 0700) == 0);
    snprintf(p, sizeof p, "%s/in/tree/empty", g_tmp);
    CHECK(mkdir(p, 0700) == 0);
    snprintf(p, sizeof p, "%s/in/tree/a.bin", g_tmp);
    CHECK(write_file(p, 100000, 3) == 0);
    snprintf(p, sizeof p, "%s/in/tree/sub/deeper/b.txt", g_tmp);
    CHECK(write_file(p, 10, 4) == 0);
    snprintf(p, sizeof p, "%s/in/tree/sub/zero", g_tmp);
    CHECK(write_file(p, 0, 5) == 0);
    snprintf(dest, sizeof dest, "%s/out3", g_tmp);
    CHECK(mkdir(dest, 0700) == 0);

    char src[320];
    snprintf(src, sizeof src, "%s/in/tree", g_tmp);
    struct outcome o;
    run_pair(relay, 5, src, dest, ACCEPT, 0, NULL, NULL, &o);
    CHECK(o.offer_kind == WH_OFFER_KIND_DIRECTORY);
    CHECK(strcmp(o.offer_name, "tree") == 0);
    CHECK(o.offer_size > 0);
    CHECK_RC(o.sent, WH_RESULT_OK);
    CHECK_RC(o.received, WH_RESULT_OK);
    char a[400], b[400];
    snprintf(a, sizeof a, "%s/in/tree/a.bin", g_tmp);
    snprintf(b, sizeof b, "%s/tree/a.bin", dest);
    CHECK(same_file(a, b));
    snprintf(a, sizeof a, "%s/in/tree/sub/deeper/b.txt", g_tmp);
    snprintf(b, sizeof b, "%s/tree/sub/deeper/b.txt", dest);
    CHECK(same_file(a, b));
    snprintf(b, sizeof b, "%s/tree/sub/zero", dest);
    CHECK(file_size(b) == 0);
    snprintf(b, sizeof b, "%s/tree/empty", dest);
    CHECK(is_dir(b) && dir_entries(b) == 0);
    CHECK(dir_entries(dest) == 1);
}

static void test_reject(const char *relay) {
    char src[320], dest[320];
    snprintf(src, sizeof src, "%s/in/data.bin", g_tmp);
    snprintf(dest, sizeof dest, "%s/out4", g_tmp);
    CHECK(mkdir(dest, 0700) == 0);
    struct outcome o;
    run_pair(relay, 6, src, dest, REJECT, 0, NULL, NULL, &o);
    CHECK(o.offers == 1);
    CHECK_RC(o.received, WH_RESULT_CANCELLED);
    CHECK_RC(o.sent, WH_RESULT_TRANSFER);
    CHECK(strstr(o.sent_msg, "rejected") != NULL);
    CHECK(o.progress_s == 0 && o.progress_r == 0);
    CHECK(dir_entries(dest) == 0);
}

/* Cancel mid-transfer on one side (at its first progress event): the canceller gets
 * CANCELLED, the peer an error, and no file is left in the destination. */
static void test_cancel_side(const char *relay, enum action action, unsigned n) {
    char src[320], dest[320];
    snprintf(src, sizeof src, "%s/in/big.bin", g_tmp);
    snprintf(dest, sizeof dest, "%s/out-cancel-%u", g_tmp, n);
    if (file_size(src) < 0) CHECK(write_file(src, 48u << 20, 6) == 0);
    CHECK(mkdir(dest, 0700) == 0);
    wh_transfer_options opts = {0};
    opts.progress_interval_ms = 1;
    struct outcome o;
    run_pair(relay, n, src, dest, action, 0, &opts, &opts, &o);
    if (action == CANCEL_SENDER) {
        CHECK_RC(o.sent, WH_RESULT_CANCELLED);
        CHECK(o.received != WH_RESULT_OK && o.received != WH_RESULT_PANIC);
    } else {
        CHECK_RC(o.received, WH_RESULT_CANCELLED);
        CHECK(o.sent != WH_RESULT_OK && o.sent != WH_RESULT_PANIC);
    }
    CHECK(dir_entries(dest) == 0); /* no partial file, complete-looking or not */
}

/* Delegate mode on the receiving side: the offer callback accepts from inside itself. */
struct rside {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    wh_wormhole *w;
    const char *dest;
    int offers, progress, done, closed, frees;
    wh_result received;
    char saved[512];
};

static void d_offer(void *ud, const char *name, wh_offer_kind kind, uint64_t size) {
    struct rside *s = ud;
    CHECK(name && strcmp(name, "data.bin") == 0);
    CHECK(kind == WH_OFFER_KIND_FILE);
    CHECK(size == (3u << 20));
    pthread_mutex_lock(&s->lock);
    s->offers++;
    pthread_mutex_unlock(&s->lock);
    CHECK_RC(wh_accept_offer(s->w, s->dest, false), WH_RESULT_OK);
}

static void d_progress(void *ud, uint64_t done, uint64_t total) {
    struct rside *s = ud;
    CHECK(done <= total);
    pthread_mutex_lock(&s->lock);
    s->progress++;
    pthread_mutex_unlock(&s->lock);
}

static void d_received(void *ud, wh_result r, const char *msg) {
    struct rside *s = ud;
    pthread_mutex_lock(&s->lock);
    s->done++;
    s->received = r;
    snprintf(s->saved, sizeof s->saved, "%s", msg ? msg : "(null)");
    pthread_mutex_unlock(&s->lock);
    wh_close(s->w);
}

static void d_closed(void *ud, wh_result r, const char *msg) {
    struct rside *s = ud;
    (void)r;
    (void)msg;
    pthread_mutex_lock(&s->lock);
    s->closed++;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void d_free(void *ud) {
    struct rside *s = ud;
    pthread_mutex_lock(&s->lock);
    s->frees++;
    pthread_mutex_unlock(&s->lock);
}

static void test_delegate(const char *relay) {
    char src[320], dest[320], want[400];
    snprintf(src, sizeof src, "%s/in/data.bin", g_tmp);
    snprintf(dest, sizeof dest, "%s/out5", g_tmp);
    snprintf(want, sizeof want, "%s/data.bin", dest);
    CHECK(mkdir(dest, 0700) == 0);
    struct rside rs;
    memset(&rs, 0, sizeof rs);
    pthread_mutex_init(&rs.lock, NULL);
    pthread_cond_init(&rs.cond, NULL);
    rs.dest = dest;
    wh_delegate d = {0};
    d.user_data = &rs;
    d.user_data_free = d_free;
    d.file_offer = d_offer;
    d.transfer_progress = d_progress;
    d.file_received = d_received;
    d.closed = d_closed;
    wh_options opt = {.connect_timeout_ms = 20000, .close_timeout_ms = 5000};
    wh_wormhole *r = NULL;
    CHECK_RC(wh_create(WH_TRANSFER_APPID, relay, NULL, &opt, &d, &r), WH_RESULT_OK);
    if (!r) return;
    rs.w = r; /* before any callback can need it: nothing happens before the code is set */
    wh_wormhole *s = h_create(relay, WH_TRANSFER_APPID);
    char code[64];
    h_code(code, sizeof code, 7, "delegate-transfer");
    CHECK_RC(wh_receive_file(r, NULL), WH_RESULT_OK);
    CHECK_RC(wh_set_code(r, code), WH_RESULT_OK);
    CHECK_RC(wh_set_code(s, code), WH_RESULT_OK);
    CHECK_RC(wh_send_file(s, src, NULL), WH_RESULT_OK);
    wh_event *ev = h_wait_for(s, WH_EVENT_KIND_FILE_SENT, 240000);
    CHECK(ev && wh_event_get_kind(ev) == WH_EVENT_KIND_FILE_SENT);
    CHECK_RC(wh_event_result(ev), WH_RESULT_OK);
    wh_event_free(ev);
    wh_close(s);
    ev = h_wait_for(s, WH_EVENT_KIND_CLOSED, 60000);
    CHECK(ev != NULL);
    wh_event_free(ev);
    pthread_mutex_lock(&rs.lock);
    double deadline = now_s() + 60;
    while (!rs.closed && now_s() < deadline) {
        pthread_mutex_unlock(&rs.lock);
        sleep_ms(10);
        pthread_mutex_lock(&rs.lock);
    }
    CHECK(rs.closed == 1);
    CHECK(rs.offers == 1);
    CHECK(rs.progress >= 1);
    CHECK(rs.done == 1);
    CHECK_RC(rs.received, WH_RESULT_OK);
    CHECK(strcmp(rs.saved, want) == 0);
    pthread_mutex_unlock(&rs.lock);
    CHECK(same_file(src, want));
    wh_free(s);
    wh_free(r);
    CHECK(rs.frees == 1);
    pthread_mutex_destroy(&rs.lock);
    pthread_cond_destroy(&rs.cond);
}

/* Through a transit relay only: neither side listens; the sender names the relay. */
static void test_relay(const char *relay, const char *transit_relay) {
    char src[320], dest[320], want[400];
    snprintf(src, sizeof src, "%s/in/data.bin", g_tmp);
    snprintf(dest, sizeof dest, "%s/out6", g_tmp);
    snprintf(want, sizeof want, "%s/data.bin", dest);
    CHECK(mkdir(dest, 0700) == 0);
    wh_transfer_options so = {0}, ro = {0};
    so.transit_relay = transit_relay;
    so.no_listen = true;
    ro.no_listen = true;
    struct outcome o;
    run_pair(relay, 10, src, dest, ACCEPT, 0, &so, &ro, &o);
    CHECK(o.offers == 1);
    CHECK(o.progress_s >= 1 && o.progress_r >= 1);
    CHECK_RC(o.sent, WH_RESULT_OK);
    CHECK_RC(o.received, WH_RESULT_OK);
    CHECK(same_file(src, want));
}

/* wh_receive_file gets text instead: it arrives as TEXT_RECEIVED and ends the operation. */
static void test_text_instead(const char *relay) {
    wh_wormhole *s = h_create(relay, WH_TRANSFER_APPID), *r = h_create(relay, WH_TRANSFER_APPID);
    char code[64];
    h_code(code, sizeof code, 11, "text-instead");
    CHECK_RC(wh_receive_file(r, NULL), WH_RESULT_OK);
    CHECK_RC(wh_set_code(r, code), WH_RESULT_OK);
    CHECK_RC(wh_set_code(s, code), WH_RESULT_OK);
    CHECK_RC(wh_send_text(s, "not a file"), WH_RESULT_OK);
    wh_event *ev = h_wait_for(r, WH_EVENT_KIND_TEXT_RECEIVED, 60000);
    CHECK(ev && wh_event_get_kind(ev) == WH_EVENT_KIND_TEXT_RECEIVED);
    CHECK(ev && wh_event_result(ev) == WH_RESULT_OK && strcmp(wh_event_text(ev), "not a file") == 0);
    wh_event_free(ev);
    ev = h_wait_for(s, WH_EVENT_KIND_TEXT_SENT, 60000);
    CHECK(ev && wh_event_get_kind(ev) == WH_EVENT_KIND_TEXT_SENT && wh_event_result(ev) == WH_RESULT_OK);
    wh_event_free(ev);
    /* The operation is over: another may start. */
    CHECK_RC(wh_receive_text(r), WH_RESULT_OK);
    wh_close(s);
    wh_close(r);
    ev = h_wait_for(s, WH_EVENT_KIND_CLOSED, 60000);
    CHECK(ev && wh_event_result(ev) == WH_RESULT_OK);
    wh_event_free(ev);
    ev = h_wait_for(r, WH_EVENT_KIND_CLOSED, 60000);
    CHECK(ev != NULL);
    wh_event_free(ev);
    wh_free(s);
    wh_free(r);
}

static void test_argument_errors(const char *relay) {
    char src[320];
    snprintf(src, sizeof src, "%s/in/data.bin", g_tmp);
    const char bad[] = {'x', (char)0xff, 0};
    CHECK_RC(wh_send_file(NULL, src, NULL), WH_RESULT_NULL_ARGUMENT);
    CHECK_RC(wh_receive_file(NULL, NULL), WH_RESULT_NULL_ARGUMENT);
    CHECK_RC(wh_accept_offer(NULL, ".", false), WH_RESULT_NULL_ARGUMENT);
    CHECK_RC(wh_reject_offer(NULL), WH_RESULT_NULL_ARGUMENT);
    CHECK_RC(wh_cancel_transfer(NULL), WH_RESULT_NULL_ARGUMENT);
    CHECK(wh_event_offer_kind(NULL) == WH_OFFER_KIND_NONE);
    CHECK(wh_event_bytes_done(NULL) == 0 && wh_event_bytes_total(NULL) == 0);

    wh_wormhole *w = h_create(relay, WH_TRANSFER_APPID);
    CHECK_RC(wh_send_file(w, NULL, NULL), WH_RESULT_NULL_ARGUMENT);
    CHECK_RC(wh_send_file(w, bad, NULL), WH_RESULT_INVALID_UTF8);
    CHECK_RC(wh_send_file(w, "/nonexistent/wh-test-file", NULL), WH_RESULT_INVALID_ARGUMENT);
    wh_transfer_options o = {0};
    o.transit_relay = "no-scheme:1";
    CHECK_RC(wh_send_file(w, src, &o), WH_RESULT_INVALID_ARGUMENT);
    CHECK_RC(wh_receive_file(w, &o), WH_RESULT_INVALID_ARGUMENT);
    o.transit_relay = bad;
    CHECK_RC(wh_receive_file(w, &o), WH_RESULT_INVALID_UTF8);
    CHECK_RC(wh_accept_offer(w, NULL, false), WH_RESULT_NULL_ARGUMENT);
    CHECK_RC(wh_accept_offer(w, bad, false), WH_RESULT_INVALID_UTF8);
    CHECK_RC(wh_accept_offer(w, ".", false), WH_RESULT_INVALID_STATE);
    CHECK_RC(wh_reject_offer(w), WH_RESULT_INVALID_STATE);
    CHECK_RC(wh_cancel_transfer(w), WH_RESULT_OK);
    /* One transfer at a time. */
    o.transit_relay = "tcp:127.0.0.1:1";
    CHECK_RC(wh_send_file(w, src, &o), WH_RESULT_OK);
    CHECK_RC(wh_send_file(w, src, NULL), WH_RESULT_IN_PROGRESS);
    CHECK_RC(wh_receive_file(w, NULL), WH_RESULT_IN_PROGRESS);
    CHECK_RC(wh_send_text(w, "x"), WH_RESULT_IN_PROGRESS);
    CHECK_RC(wh_accept_offer(w, ".", false), WH_RESULT_INVALID_STATE);
    /* Closing completes it (before `closed`), and later calls get the close outcome. */
    CHECK_RC(wh_cancel(w), WH_RESULT_OK);
    wh_event *ev = h_wait_for(w, WH_EVENT_KIND_FILE_SENT, 20000);
    CHECK(ev && wh_event_get_kind(ev) == WH_EVENT_KIND_FILE_SENT);
    CHECK(ev && wh_event_result(ev) != WH_RESULT_OK);
    wh_event_free(ev);
    ev = h_wait_for(w, WH_EVENT_KIND_CLOSED, 20000);
    CHECK(ev && wh_event_result(ev) == WH_RESULT_CANCELLED);
    wh_event_free(ev);
    CHECK_RC(wh_send_file(w, src, NULL), WH_RESULT_CANCELLED);
    CHECK_RC(wh_receive_file(w, NULL), WH_RESULT_CANCELLED);
    wh_free(w);

    /* Free with a transfer pending returns promptly. */
    w = h_create(relay, WH_TRANSFER_APPID);
    CHECK_RC(wh_receive_file(w, NULL), WH_RESULT_OK);
    double t0 = now_s();
    wh_free(w);
    CHECK(now_s() - t0 < 15);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s RELAY_URL\n", argv[0]);
        return 2;
    }
    const char *relay = argv[1];
    const char *base = getenv("TMPDIR");
    snprintf(g_tmp, sizeof g_tmp, "%s/wh-transfer-XXXXXX", base && base[0] ? base : "/tmp");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    char in[320];
    snprintf(in, sizeof in, "%s/in", g_tmp);
    CHECK(mkdir(in, 0700) == 0);
    char data[400];
    snprintf(data, sizeof data, "%s/data.bin", in);
    CHECK(write_file(data, 3u << 20, 1) == 0);

    test_argument_errors(relay);
    test_file(relay);
    test_empty_file(relay);
    test_directory(relay);
    test_reject(relay);
    test_text_instead(relay);
    test_delegate(relay);
    test_cancel_side(relay, CANCEL_RECEIVER, 8);
    test_cancel_side(relay, CANCEL_SENDER, 9);
    if (argc > 2) test_relay(relay, argv[2]);

    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return h_finish("test_transfer");
}
