"""Receive a file or directory with the asyncio API, like `wormhole receive`.

    python receive_file_asyncio.py CODE [DEST_DIR] [RELAY_URL]

Shows the offer and accepts it into DEST_DIR (default: the current directory); an
existing file is never overwritten. Ctrl-C cancels and removes the partial file.
"""

import asyncio
import os
import sys

import wormhole


async def main(code: str, dest: str, relay_url: str) -> None:
    w = wormhole.create(wormhole.TRANSFER_APPID, relay_url)
    w.set_code(code)
    offer = await w.receive_offer()
    if offer.kind == "text":
        print(offer.text)
    else:
        print("Receiving %s %r (%d bytes)" % (offer.kind, offer.name, offer.size), flush=True)
        try:
            path = await offer.accept(dest, overwrite=False)
        except wormhole.errors.TransferError as e:
            print("refused: %s" % e)
            await w.close()
            sys.exit(1)
        print("Received into %s" % path)
    await w.close()


if __name__ == "__main__":
    url = sys.argv[3] if len(sys.argv) > 3 else os.environ.get(
        "WORMHOLE_RELAY_URL", "ws://127.0.0.1:4000/v1"
    )
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ".", url))
