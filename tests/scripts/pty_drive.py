#!/usr/bin/env python3
"""Run a command on a pseudo-terminal and type into it, for the CLI's interactive tests.

    pty_drive.py STEPS_JSON COMMAND [ARG...]

STEPS_JSON is a list of steps, each run once the previous one is done:
  ["expect", REGEX]    wait until the terminal output since the last match matches REGEX;
  ["send", TEXT]       type TEXT;
  ["complete", REGEX]  press Tab, once a second, until the new output matches REGEX
                       (the first Tab may come before the completion data has arrived).
After the last step it waits for the command to exit. Everything the command wrote to the
terminal goes to stdout; the exit status is the command's, or 124 when a step or the exit
takes longer than 30 seconds (the command is killed, and the reason is on stderr).
"""
import json
import os
import pty
import re
import select
import signal
import sys
import time

LIMIT = 30.0


def main():
    steps = json.loads(sys.argv[1])
    cmd = sys.argv[2:]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(cmd[0], cmd)
    out = bytearray()
    eof = False

    def pump(timeout):
        """Read what is there (waiting up to `timeout`); False at end of output."""
        nonlocal eof
        if eof:
            return False
        ready, _, _ = select.select([fd], [], [], max(timeout, 0))
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the command closed the terminal
                data = b""
            if not data:
                eof = True
                return False
            out.extend(data)
        return True

    def fail(why):
        sys.stdout.write(out.decode("utf-8", "replace"))
        sys.stdout.flush()
        print(f"pty_drive: {why}", file=sys.stderr)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        sys.exit(124)

    mark = 0
    for kind, arg in steps:
        if kind == "send":
            os.write(fd, arg.encode())
            continue
        pattern = re.compile(arg.encode())
        deadline = time.monotonic() + LIMIT
        next_tab = time.monotonic()
        while True:
            if kind == "complete" and time.monotonic() >= next_tab:
                os.write(fd, b"\t")
                next_tab = time.monotonic() + 1.0
            match = pattern.search(out, mark)
            if match:
                mark = match.end()
                break
            if time.monotonic() > deadline:
                fail(f"no output matching {arg!r} within {LIMIT} s")
            if not pump(min(0.2, deadline - time.monotonic())):
                fail(f"the command ended before writing output matching {arg!r}")

    deadline = time.monotonic() + LIMIT
    while pump(deadline - time.monotonic()):
        if time.monotonic() > deadline:
            fail(f"the command did not exit within {LIMIT} s")
    _, status = os.waitpid(pid, 0)
    sys.stdout.write(out.decode("utf-8", "replace"))
    sys.stdout.flush()
    sys.exit(os.waitstatus_to_exitcode(status) & 0xFF)


if __name__ == "__main__":
    main()
