"""Send a text with the asyncio API; prints the code for the receiver.

    python send_asyncio.py [RELAY_URL] [TEXT]

RELAY_URL defaults to $WORMHOLE_RELAY_URL, then ws://127.0.0.1:4000/v1.
Receive it with receive_asyncio.py, receive_blocking.py's peer, or the reference CLI:
`wormhole --relay-url RELAY_URL receive CODE` (the app id is the CLI's).
"""

import asyncio
import os
import sys

import wormhole


async def main(relay_url: str, text: str) -> None:
    w = wormhole.create(wormhole.TRANSFER_APPID, relay_url)
    w.allocate_code()
    code = await w.get_code()
    print("Wormhole code is: %s" % code, flush=True)
    await w.send_text(text)  # returns once the receiver acknowledged
    print("verifier:", (await w.get_verifier()).hex())
    print("text sent; closing:", await w.close())


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "WORMHOLE_RELAY_URL", "ws://127.0.0.1:4000/v1"
    )
    asyncio.run(main(url, sys.argv[2] if len(sys.argv) > 2 else "hello from Python"))
