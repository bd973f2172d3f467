#!/usr/bin/env python3
"""Benchmark: an end-to-end text exchange, our `wormhole` CLI against the reference CLI.

    text_exchange.py --ours PATH --reference PATH --twist PATH [--runs N] [--baseline PATH]

With --baseline (another build of our CLI, e.g. the previous commit's release binary) the
pairings baseline/baseline, baseline/reference and reference/baseline are measured in the
same run, to show that a change does not slow ours down.

Run it through benches/run.sh, which builds our CLI (release), prepares the reference
venv and runs this inside a loopback-only network namespace. It starts one reference
mailbox server on 127.0.0.1 and, for every pairing of sender and receiver (ours/ours,
ours/reference, reference/ours, reference/reference), runs N exchanges of each kind:

* plain: `send --text T` (allocated code), then `receive CODE` once the code is printed;
  measures the wall time from starting the sender until both have exited, and the CPU
  time (user + system) both processes used;
* verify: the same with `--verify` on both sides; measures the time from both sides
  holding the code (the receiver is started with it) until both hold the verifier
  (the sender's "Verifier …ok?" prompt and the receiver's "Verifier …" line).

Every exchange must deliver the text intact, or the script fails. It prints a table of
medians (and the minimum and maximum).
"""
import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

TEXT = "benchmark text: the quick brown fox jumps over the lazy dog"
LIMIT = 60.0


class Stream(threading.Thread):
    """Reads a pipe in the background, noting when each watched pattern first appears."""

    def __init__(self, pipe, patterns):
        super().__init__(daemon=True)
        self.pipe = pipe
        self.patterns = {name: re.compile(p) for name, p in patterns.items()}
        self.seen = {}  # name -> (time, match)
        self.data = b""
        self.cond = threading.Condition()
        self.start()

    def run(self):
        fd = self.pipe.fileno()
        while True:
            chunk = os.read(fd, 65536)
            now = time.monotonic()
            with self.cond:
                if not chunk:
                    self.cond.notify_all()
                    return
                self.data += chunk
                for name, pat in self.patterns.items():
                    if name not in self.seen:
                        m = pat.search(self.data)
                        if m:
                            self.seen[name] = (now, m)
                self.cond.notify_all()

    def wait_for(self, name, what):
        deadline = time.monotonic() + LIMIT
        with self.cond:
            while name not in self.seen:
                left = deadline - time.monotonic()
                if left <= 0 or not self.is_alive():
                    raise RuntimeError(f"no {what}; output so far:\n{self.text()}")
                self.cond.wait(left)
            return self.seen[name]

    def text(self):
        return self.data.decode("utf-8", "replace")


class Cli:
    """One CLI process with watched stdout/stderr and its rusage once reaped."""

    def __init__(self, argv, out_patterns, err_patterns):
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.out = Stream(self.proc.stdout, out_patterns)
        self.err = Stream(self.proc.stderr, err_patterns)
        self.ended = None
        self.cpu = None
        self.status = None

    def answer(self, line):
        self.proc.stdin.write(line.encode())
        self.proc.stdin.flush()

    def reap(self):
        """Wait for the exit (bounded); record its time, status and CPU seconds."""
        deadline = time.monotonic() + LIMIT
        while True:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError(f"{self.proc.args[0]} hung:\n{self.err.text()}")
            time.sleep(0.002)
        self.ended = time.monotonic()
        self.status = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.status
        self.cpu = usage.ru_utime + usage.ru_stime
        self.out.join(5)
        self.err.join(5)

    def check(self, who):
        if self.status != 0:
            raise RuntimeError(
                f"{who} exited {self.status}\n--- stdout\n{self.out.text()}\n--- stderr\n{self.err.text()}"
            )


def exchange(send_bin, recv_bin, url, verify):
    """One exchange; returns (wall, cpu, code_to_verifier or None)."""
    extra = ["--verify"] if verify else []
    t0 = time.monotonic()
    sender = Cli(
        [send_bin, "--relay-url", url, "send", "--text", TEXT, "--hide-progress", "--no-qr"]
        + extra,
        {"verifier": rb"Verifier [0-9a-f]{64}\. ok\? \(yes/no\): "},
        {"code": rb"Wormhole code is: (\S+)"},
    )
    _, m = sender.err.wait_for("code", "code from the sender")
    code = m.group(1).decode()
    receiver = Cli(
        [recv_bin, "--relay-url", url, "receive", "--hide-progress", "--only-text"]
        + extra
        + [code],
        {},
        {"verifier": rb"Verifier [0-9a-f]{64}\."},
    )
    code_to_verifier = None
    if verify:
        t_sv, _ = sender.out.wait_for("verifier", "verifier prompt from the sender")
        sender.answer("yes\n")
        t_rv, _ = receiver.err.wait_for("verifier", "verifier from the receiver")
        code_to_verifier = max(t_sv, t_rv) - receiver.started
    receiver.reap()
    sender.reap()
    sender.check("sender")
    receiver.check("receiver")
    if TEXT not in receiver.out.text():
        raise RuntimeError(f"the receiver printed {receiver.out.text()!r}")
    wall = max(sender.ended, receiver.ended) - t0
    return wall, sender.cpu + receiver.cpu, code_to_verifier


def start_server(twist, port, logdir):
    log = open(os.path.join(logdir, "server.log"), "wb")
    proc = subprocess.Popen(
        [twist, "wormhole-mailbox", f"--port=tcp:{port}:interface=127.0.0.1",
         "--channel-db=:memory:"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    sys.exit(f"the mailbox server did not start; see {log.name}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fmt(values, unit="ms"):
    ms = [v * 1000 for v in values]
    return f"{statistics.median(ms):7.0f} {unit} ({min(ms):.0f}–{max(ms):.0f})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ours", required=True)
    ap.add_argument("--reference", required=True)
    ap.add_argument("--twist", required=True)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--baseline", help="another build of our CLI to compare in the same run")
    args = ap.parse_args()
    if args.runs < 5:
        sys.exit("--runs must be at least 5 (the figures are medians)")

    with tempfile.TemporaryDirectory(prefix="wormhole-bench.") as tmp:
        port = free_port()
        server = start_server(args.twist, port, tmp)
        url = f"ws://127.0.0.1:{port}/v1"
        impls = {"ours": args.ours, "reference": args.reference}
        pairings = [(s, r) for s in impls for r in impls]
        if args.baseline:
            impls["baseline"] = args.baseline
            pairings += [("baseline", "baseline"), ("baseline", "reference"),
                         ("reference", "baseline")]
        rows = []
        try:
            # One warm-up exchange per pairing (file caches, Python bytecode).
            for s, r in pairings:
                exchange(impls[s], impls[r], url, verify=False)
            for s, r in pairings:
                walls, cpus, c2v = [], [], []
                for _ in range(args.runs):
                    wall, cpu, _ = exchange(impls[s], impls[r], url, verify=False)
                    walls.append(wall)
                    cpus.append(cpu)
                for _ in range(args.runs):
                    _, _, t = exchange(impls[s], impls[r], url, verify=True)
                    c2v.append(t)
                rows.append((s, r, walls, cpus, c2v))
                print(f"  {s} → {r}: done", file=sys.stderr)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(10)

    print(f"\nText exchange through one local reference mailbox server 0.8.0; "
          f"medians of {args.runs} runs (min–max).")
    print("wall = sender start to both exited; CPU = user+sys of both processes;")
    print("code→verifier = receiver started with the code to both showing the verifier.\n")
    head = f"| {'sender':<9} | {'receiver':<9} | {'wall':<22} | {'CPU':<22} | {'code→verifier':<22} |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for s, r, walls, cpus, c2v in rows:
        print(f"| {s:<9} | {r:<9} | {fmt(walls):<22} | {fmt(cpus):<22} | {fmt(c2v):<22} |")


if __name__ == "__main__":
    main()
