"""Send a file or directory with the asyncio API, like `wormhole send PATH`.

    python send_file_asyncio.py PATH [RELAY_URL]

Prints the code, then progress; the receiver can be receive_file_asyncio.py,
receive_file_blocking.py or the reference CLI (`wormhole --relay-url RELAY_URL receive`).
RELAY_URL defaults to $WORMHOLE_RELAY_URL, then ws://127.0.0.1:4000/v1.
"""

import asyncio
import os
import sys

import wormhole


def show(done: int, total: int) -> None:
    # Called on the event loop's thread, at most every 50 ms and once at the end.
    print("\rsent %d of %d bytes" % (done, total), end="", file=sys.stderr, flush=True)


async def main(path: str, relay_url: str) -> None:
    w = wormhole.create(wormhole.TRANSFER_APPID, relay_url)
    w.allocate_code()
    print("Wormhole code is: %s" % await w.get_code(), flush=True)
    try:
        await w.send_file(path, progress=show)  # until the receiver acknowledged it all
    except wormhole.errors.TransferError as e:
        print("\ntransfer failed: %s" % e)
        await w.close()
        sys.exit(1)
    print("\nfile sent; closing:", await w.close())


if __name__ == "__main__":
    url = sys.argv[2] if len(sys.argv) > 2 else os.environ.get(
        "WORMHOLE_RELAY_URL", "ws://127.0.0.1:4000/v1"
    )
    asyncio.run(main(sys.argv[1], url))
