"""Blocking style (no event loop): receive a file or directory with wormhole.transfer.

    python receive_file_blocking.py CODE [DEST_DIR] [RELAY_URL]

Refuses offers larger than 1 GiB; never overwrites. Ctrl-C cancels and removes the
partial file.
"""

import os
import sys

from wormhole.transfer import receive_file


def accept(offer) -> bool:
    print("Receiving %s %r (%d bytes)" % (offer.kind, offer.name, offer.size), flush=True)
    return offer.size <= 1 << 30


if __name__ == "__main__":
    url = sys.argv[3] if len(sys.argv) > 3 else os.environ.get(
        "WORMHOLE_RELAY_URL", "ws://127.0.0.1:4000/v1"
    )
    dest = sys.argv[2] if len(sys.argv) > 2 else "."
    path = receive_file(sys.argv[1], dest, rendezvous=url, accept=accept)
    print("Received into %s" % path)
