"""Blocking style (no event loop): send a file or directory with wormhole.transfer.

    python send_file_blocking.py PATH [RELAY_URL]

Prints the code as soon as it is known, then blocks (without holding the interpreter)
until the receiver has everything. Ctrl-C cancels.
"""

import os
import sys

from wormhole.transfer import send_file

if __name__ == "__main__":
    url = sys.argv[2] if len(sys.argv) > 2 else os.environ.get(
        "WORMHOLE_RELAY_URL", "ws://127.0.0.1:4000/v1"
    )
    send_file(
        sys.argv[1],
        rendezvous=url,
        on_code=lambda code: print("Wormhole code is: %s" % code, flush=True),
        # Called on this thread between waits.
        progress=lambda done, total: print("%d/%d" % (done, total), file=sys.stderr),
    )
    print("file sent")
