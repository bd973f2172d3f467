// pair: two wormholes in one C++17 process, joined by the same code, each on its own
// thread in pull mode: exchange a message, compare verifiers and derived keys.
//
//   pair RELAY_URL CODE
//
// Exit status 0 when both sides agree and close happily.
#include <array>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "wormhole.h"

namespace {

// RAII owners for the library's handles: each is released with its own free function.
struct WormholeDeleter {
    void operator()(wh_wormhole *w) const { wh_free(w); }
};
struct EventDeleter {
    void operator()(wh_event *e) const { wh_event_free(e); }
};
using Wormhole = std::unique_ptr<wh_wormhole, WormholeDeleter>;
using Event = std::unique_ptr<wh_event, EventDeleter>;

void check(wh_result r, const char *what) {
    if (r != WH_RESULT_OK) throw std::runtime_error(std::string(what) + ": " + wh_result_str(r));
}

struct Outcome {
    std::string received;
    std::array<uint8_t, 32> verifier{};
    std::array<uint8_t, 16> key{};
    bool ok = false;
};

void side(const char *relay, const char *code, const std::string &mine, Outcome &out) {
    wh_wormhole *raw = nullptr;
    check(wh_create("example.com/wormhole/cpp-pair", relay, R"({"side":"cpp"})", nullptr, nullptr, &raw),
          "wh_create");
    Wormhole w(raw);
    check(wh_set_code(w.get(), code), "wh_set_code");
    check(wh_send(w.get(), reinterpret_cast<const uint8_t *>(mine.data()), mine.size()), "wh_send");
    for (;;) {
        wh_event *e = nullptr;
        check(wh_next_event(w.get(), 60000, &e), "wh_next_event");
        Event ev(e);
        switch (wh_event_get_kind(ev.get())) {
        case WH_EVENT_KIND_VERIFIER:
            std::memcpy(out.verifier.data(), wh_event_data(ev.get()), out.verifier.size());
            break;
        case WH_EVENT_KIND_MESSAGE:
            out.received.assign(reinterpret_cast<const char *>(wh_event_data(ev.get())), wh_event_len(ev.get()));
            check(wh_derive_key(w.get(), "example purpose", out.key.data(), out.key.size()), "wh_derive_key");
            check(wh_close(w.get()), "wh_close");
            break;
        case WH_EVENT_KIND_CLOSED:
            out.ok = wh_event_result(ev.get()) == WH_RESULT_OK;
            if (!out.ok) std::fprintf(stderr, "closed: %s\n", wh_event_text(ev.get()));
            return;
        default:
            break;
        }
    }
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s RELAY_URL CODE\n", argv[0]);
        return 2;
    }
    std::printf("libwormhole %s (header %s)\n", wh_version(), WH_VERSION);
    Outcome a, b;
    std::vector<std::thread> threads;
    threads.emplace_back([&] {
        try { side(argv[1], argv[2], "hello from A", a); } catch (const std::exception &e) { std::fprintf(stderr, "A: %s\n", e.what()); }
    });
    threads.emplace_back([&] {
        try { side(argv[1], argv[2], "hello from B", b); } catch (const std::exception &e) { std::fprintf(stderr, "B: %s\n", e.what()); }
    });
    for (auto &t : threads) t.join();
    bool good = a.ok && b.ok && a.received == "hello from B" && b.received == "hello from A" &&
                a.verifier == b.verifier && a.key == b.key;
    std::printf("A got \"%s\", B got \"%s\", verifiers %s, keys %s\n", a.received.c_str(), b.received.c_str(),
                a.verifier == b.verifier ? "match" : "differ", a.key == b.key ? "match" : "differ");
    return good ? 0 : 1;
}
