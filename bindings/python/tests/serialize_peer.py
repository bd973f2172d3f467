"""Our side for test_serialize.py, journaled: ``serialize_peer.py STATE RELAY_URL STOP``.

A delegated wormhole (asyncio) with a :class:`wormhole.journal.Journal` whose checkpoint
saves ``w.serialize()`` and the last event handled to STATE. Without STATE it allocates a
code; with it, it continues the saved wormhole. When the checkpoint after event STOP has
been saved it prints ``SAVED <event>`` and waits to be killed. It prints ``CODE <code>``,
sends ``hello from python`` once it has the verifier, prints ``GOT <message>`` and closes;
``CLOSED happy`` at the end.
"""

import asyncio
import json
import os
import sys
import time

import wormhole
from wormhole.journal import Journal

APPID = "wormhole-rs.example/tests/python-serialize"
state_path, relay_url, stop = sys.argv[1:4]


async def main() -> None:
    done = asyncio.get_running_loop().create_future()
    box = {}

    def save_checkpoint() -> None:
        data = {"last": box.get("last"), "wormhole": box["w"].serialize()}
        tmp = state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, state_path)
        print("SAVED", box.get("last"), flush=True)
        if box.get("last") == stop:
            time.sleep(3600)  # killed here

    class Delegate:
        def wormhole_got_welcome(self, welcome):
            box["last"] = "welcome"  # before the code: the allocation is still held

        def wormhole_got_code(self, code):
            box["last"] = "code"
            print("CODE", code, flush=True)

        def wormhole_got_verifier(self, verifier):
            box["last"] = "verifier"
            box["w"].send_message(b"hello from python")

        def wormhole_got_message(self, msg):
            box["last"] = "message"
            print("GOT", msg.decode(), flush=True)
            box["w"].close()

        def wormhole_closed(self, result):
            if not done.done():
                done.set_result(result)

    journal = Journal(save_checkpoint)
    if os.path.exists(state_path):
        with open(state_path) as f:
            saved = json.load(f)
        print("RESTORED after", saved["last"], flush=True)
        box["w"] = wormhole.from_serialized(saved["wormhole"], None, Delegate(), journal=journal)
    else:
        box["w"] = wormhole.create(APPID, relay_url, None, delegate=Delegate(), journal=journal)
        box["w"].allocate_code()
    result = await asyncio.wait_for(done, 60)
    print("CLOSED", result if isinstance(result, str) else repr(result), flush=True)


asyncio.run(main())
