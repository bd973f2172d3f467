"""Dilation benchmark: one stream over one subchannel, direct and through a relay, between
ours and the reference 0.24 in every pairing, in one run on our server (release builds).
Run it with `benches/run.sh dilation [--size MIB] [--runs N]` (inside a loopback-only
network namespace).

With `--python PY` (run.sh passes a venv with a release build of our Python module) it
also runs `tests/scripts/ref_dilate.py`, a program written for the reference, on our
module ("python") against itself and the reference: the same program on two libraries.

For each (sender, receiver, path) it prints the receiver's MB/s (10^6 bytes per second
from the first to the last byte, as DILATION.md measures), CPU seconds per GiB of each side
(user + system, /usr/bin/time) and each side's peak RSS; the median run by MB/s. Every
stream is checked end to end with CRC-32 (each chunk begins with its index, so lost,
repeated or swapped chunks show): SHA-256 would cost about 0.5 CPU-s per GiB on each side,
more than the check is worth here; the tests use SHA-256.

`--recovery N` measures instead how fast a stream recovers from a reset connection:
relay only, through a proxy in this script that resets both of its TCP connections
(SO_LINGER 0) N times mid-stream, the k-th time once (k/(N+1)) of the stream has crossed
it. Recovery is the time from a reset to our peer's next `connected` status (the new
connection selected, its keys confirmed); our peer leads when the reference is the other
side (the reference leading sometimes never retries a failed relay round: DILATION.md).
"""

import argparse
import json
import os
import re
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

GIB = 1 << 30


def peer_cmd(kind, args, ns):
    if kind == "ours":
        return [ns.ours] + args
    if kind == "python":
        # The same reference program, on our Python module.
        return [ns.py_ours, ns.ref_script] + args
    return [ns.python, ns.ref_script] + args


class Peer:
    def __init__(self, kind, args, ns, tmp, name):
        self.timefile = os.path.join(tmp, name + ".time")
        cmd = ["/usr/bin/time", "-f", "%e %U %S %M", "-o", self.timefile] + peer_cmd(kind, args, ns)
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.said = []

    def expect(self, key, timeout=600):
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = self.p.stdout.readline()
            if not line:
                raise SystemExit("peer ended; it said %r" % self.said)
            v = json.loads(line)
            self.said.append(v)
            if "error" in v:
                raise SystemExit("peer failed: %r" % v)
            if key in v:
                return v
        raise SystemExit("timed out waiting for %s" % key)

    def finish(self):
        self.p.stdin.close()
        self.p.wait(timeout=120)
        wall, user, sys_, rss = open(self.timefile).read().split()[-4:]
        return float(user) + float(sys_), int(rss) / 1024


def run_one(sender, receiver, path, ns, size, tmp):
    appid = "bench.example/dilation"
    common = ["--crc32"]
    if path == "relay":
        common += ["--relay", ns.relay, "--no-listen"]
    r = Peer(receiver, [ns.mailbox, appid, "--allocate"] + common + ["serve"], ns, tmp, "r")
    code = r.expect("code")["code"]
    s = Peer(sender, [ns.mailbox, appid, "--code", code] + common + ["send", str(size)], ns, tmp, "s")
    sink = r.expect("sink")
    sent = s.expect("sent")
    if sink["bytes"] != size or sink["crc32"] != sent["crc32"]:
        raise SystemExit("stream damaged: sent %r, received %r" % (sent, sink))
    s_cpu, s_rss = s.finish()
    r_cpu, r_rss = r.finish()
    secs = max(sink["last"] - sink["first"], 1e-6)
    return {
        "mbs": size / secs / 1e6,
        "s_cpu": s_cpu * GIB / size,
        "r_cpu": r_cpu * GIB / size,
        "s_rss": s_rss,
        "r_rss": r_rss,
    }


class CutProxy:
    """A TCP proxy in front of `target` that can reset every connection through it."""

    def __init__(self, target):
        self.target = target
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.socks = []
        self.carried = 0
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                a, _ = self.lsock.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(self.target)
            except OSError:
                a.close()
                continue
            with self.lock:
                self.socks += [a, b]
            for x, y in ((a, b), (b, a)):
                threading.Thread(target=self.pipe, args=(x, y), daemon=True).start()

    def pipe(self, src, dst):
        try:
            while True:
                data = src.recv(1 << 20)
                if not data:
                    break
                dst.sendall(data)
                with self.lock:
                    self.carried += len(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def cut(self):
        """Reset every connection; returns the time of the reset."""
        with self.lock:
            socks, self.socks = self.socks, []
        t = time.time()
        for s in socks:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # close() alone would wait for the thread blocked in recv() on it to
                # return before the socket goes (and its RST with it); SHUT_RD wakes it.
                s.shutdown(socket.SHUT_RD)
                s.close()
            except OSError:
                pass
        return t


def run_recovery(sender, receiver, ns, size, cuts, tmp):
    """One stream through a CutProxy reset `cuts` times; the recovery times (s)."""
    appid = "bench.example/dilation-recovery"
    host, port = ns.relay[len("tcp:"):].rsplit(":", 1)
    proxy = CutProxy((host, int(port)))
    common = ["--crc32", "--relay", "tcp:127.0.0.1:%d" % proxy.port, "--no-listen"]
    lead = ["--side", "ffffffffffffffff"] if "reference" in (sender, receiver) else []
    r = Peer(receiver, [ns.mailbox, appid, "--allocate"] + common
             + (lead if receiver == "ours" else []) + ["serve"], ns, tmp, "r")
    code = r.expect("code")["code"]
    s = Peer(sender, [ns.mailbox, appid, "--code", code] + common
             + (lead if sender == "ours" else []) + ["send", str(size)], ns, tmp, "s")
    done = {}
    threading.Thread(target=lambda: done.update(sink=r.expect("sink", 900)),
                     daemon=True).start()
    times = []
    for k in range(1, cuts + 1):
        while proxy.carried < size * k // (cuts + 1) and "sink" not in done:
            time.sleep(0.005)
        if "sink" in done:
            raise SystemExit("the stream ended before reset %d" % k)
        times.append(proxy.cut())
    while "sink" not in done:
        time.sleep(0.05)
    sink = done["sink"]
    sent = s.expect("sent")
    if sink["bytes"] != size or sink["crc32"] != sent["crc32"]:
        raise SystemExit("stream damaged: sent %r, received %r" % (sent, sink))
    s.finish()
    r.finish()
    proxy.lsock.close()
    ours = s if sender == "ours" else r
    connected = [v["t"] for v in ours.said if v.get("status") == "connected"]
    out = []
    for t in times:
        after = [c for c in connected if c > t]
        if not after:
            raise SystemExit("no connection after the reset at %.3f: %r" % (t, ours.said))
        out.append(min(after) - t)
    if os.environ.get("BENCH_DEBUG"):
        print("resets", times, "recovery", out, file=sys.stderr)
        for p in (s, r):
            print([v for v in p.said if "status" in v], file=sys.stderr)
    return out


def start_server(ns, tmp):
    log = open(os.path.join(tmp, "server.log"), "w+")
    srv = subprocess.Popen([ns.server, "all", "--mailbox-listen", "127.0.0.1:0",
                            "--relay-listen", "127.0.0.1:0", "--db", ":memory:"],
                           stdout=subprocess.DEVNULL, stderr=log)
    for _ in range(200):
        log.seek(0)
        text = log.read()
        m = re.search(r"mailbox ready: (ws://[^/\s]*)", text)
        r = re.search(r"relay ready: (tcp:\S+)", text)
        if m and r:
            return srv, m.group(1) + "/v1", r.group(1)
        time.sleep(0.1)
    raise SystemExit("the server did not start: %s" % text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", required=True, help="the dilation_peer binary (release)")
    ap.add_argument("--server", required=True, help="wormhole-server (release)")
    ap.add_argument("--venv", required=True, help="the reference venv")
    ap.add_argument("--size", type=int, default=1024, help="MiB per stream (1024)")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--only", default="", help="pairs to run, e.g. ours-ours,ours-reference")
    ap.add_argument("--python", dest="py_ours", default="",
                    help="a Python with our module installed: adds the pairs of 'python' "
                         "(tests/scripts/ref_dilate.py, a reference 0.24 program, run on our "
                         "module) with the reference and with itself")
    ap.add_argument("--recovery", type=int, default=0,
                    help="measure recovery from N resets per run instead of throughput")
    ns = ap.parse_args()
    ns.python = os.path.join(ns.venv, "bin", "python")
    ns.ref_script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                 "scripts", "ref_dilate.py")
    size = ns.size << 20
    with tempfile.TemporaryDirectory() as tmp:
        srv, ns.mailbox, ns.relay = start_server(ns, tmp)
        try:
            pairs = [("ours", "ours"), ("ours", "reference"), ("reference", "ours"),
                     ("reference", "reference")]
            if ns.py_ours:
                pairs += [("python", "python"), ("python", "reference"),
                          ("reference", "python")]
            only = [p for p in ns.only.split(",") if p]
            if ns.recovery:
                print("Dilation recovery, %d MiB over one subchannel through the relay, reset "
                      "%d times per run, %d run(s) each" % (ns.size, ns.recovery, ns.runs))
                print("| sender -> receiver | resets | median ms | max ms |")
                print("|---|---|---|---|")
                for sender, receiver in pairs[:3]:
                    if only and "%s-%s" % (sender, receiver) not in only:
                        continue
                    rec = []
                    for _ in range(ns.runs):
                        rec += run_recovery(sender, receiver, ns, size, ns.recovery, tmp)
                    print("| %s -> %s | %d | %.0f | %.0f |" % (
                        sender, receiver, len(rec), statistics.median(rec) * 1000,
                        max(rec) * 1000))
                    sys.stdout.flush()
                return
            print("Dilation, %d MiB over one subchannel, %d run(s) each (median by MB/s)"
                  % (ns.size, ns.runs))
            print("| sender -> receiver | path | MB/s | sender CPU s/GiB | receiver CPU s/GiB "
                  "| sender RSS MiB | receiver RSS MiB |")
            print("|---|---|---|---|---|---|---|")
            for sender, receiver in pairs:
                if only and "%s-%s" % (sender, receiver) not in only:
                    continue
                for path in ("direct", "relay"):
                    runs = [run_one(sender, receiver, path, ns, size, tmp) for _ in range(ns.runs)]
                    m = sorted(runs, key=lambda x: x["mbs"])[len(runs) // 2]
                    print("| %s -> %s | %s | %.0f | %.2f | %.2f | %.1f | %.1f |" % (
                        sender, receiver, path, m["mbs"], m["s_cpu"], m["r_cpu"],
                        m["s_rss"], m["r_rss"]))
                    sys.stdout.flush()
        finally:
            srv.kill()


if __name__ == "__main__":
    main()
