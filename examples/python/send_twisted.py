"""Deferred mode on a Twisted reactor, as in the reference library's documentation.

    python send_twisted.py [RELAY_URL] [MESSAGE]

Allocates a code, sends MESSAGE (bytes) and prints the peer's reply; the peer can be
receive_asyncio.py-like code or a second copy with set_code (see the README).
"""

import os
import sys

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import react

import wormhole

APPID = "example.com/wormhole-python-example/twisted"


@inlineCallbacks
def main(reactor, relay_url, message):
    w = wormhole.create(APPID, relay_url, reactor)
    w.allocate_code()
    code = yield w.get_code()
    print("code:", code, flush=True)
    w.send_message(message.encode())
    reply = yield w.get_message()
    print("reply:", reply.decode("utf-8", "replace"))
    yield w.close()


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "WORMHOLE_RELAY_URL", "ws://127.0.0.1:4000/v1"
    )
    react(main, [url, sys.argv[2] if len(sys.argv) > 2 else "hello"])
