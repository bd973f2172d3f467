"""Blocking style (no event loop): the receiver of the transcribe API.

    python receive_blocking.py CODE [RELAY_URL] [BLOB]
"""

import os
import sys

from wormhole.transcribe import Receiver

APPID = "example.com/wormhole-python-example"

if __name__ == "__main__":
    code = sys.argv[1]
    url = sys.argv[2] if len(sys.argv) > 2 else os.environ.get(
        "WORMHOLE_RELAY_URL", "ws://127.0.0.1:4000/v1"
    )
    blob = (sys.argv[3] if len(sys.argv) > 3 else "receiver's blob").encode()
    theirs = Receiver(APPID, code, blob, rendezvous=url).finish()
    print("Their blob: %s" % theirs.decode("utf-8", "replace"))
