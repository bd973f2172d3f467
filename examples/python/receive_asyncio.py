"""Receive a text with the asyncio API (from send_asyncio.py or `wormhole send --text`).

    python receive_asyncio.py [RELAY_URL] [CODE]

Without CODE, the code is read from the terminal with Tab completion.
"""

import asyncio
import os
import sys

import wormhole


async def main(relay_url: str, code: "str | None") -> None:
    w = wormhole.create(wormhole.TRANSFER_APPID, relay_url)
    if code:
        w.set_code(code)
    else:
        await wormhole.input_with_completion("Enter receive wormhole code: ", w.input_code())
    text = await w.receive_text()
    print(text)
    await w.close()


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "WORMHOLE_RELAY_URL", "ws://127.0.0.1:4000/v1"
    )
    asyncio.run(main(url, sys.argv[2] if len(sys.argv) > 2 else None))
