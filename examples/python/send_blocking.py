"""Blocking style (no event loop): the initiator of the transcribe API.

    python send_blocking.py [RELAY_URL] [BLOB]

Prints the invitation code, waits for receive_blocking.py, prints its blob.
Ctrl-C interrupts the wait.
"""

import os
import sys

from wormhole.transcribe import Initiator

APPID = "example.com/wormhole-python-example"

if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "WORMHOLE_RELAY_URL", "ws://127.0.0.1:4000/v1"
    )
    blob = (sys.argv[2] if len(sys.argv) > 2 else "initiator's blob").encode()
    i = Initiator(APPID, blob, rendezvous=url)
    print("Invitation Code: %s" % i.start(), flush=True)
    theirs = i.finish()
    print("Their blob: %s" % theirs.decode("utf-8", "replace"))
