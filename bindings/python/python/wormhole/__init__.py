"""Magic Wormhole on a Rust core, with the reference library's API.

``wormhole.create(appid, relay_url, reactor)`` returns a wormhole whose events arrive
as asyncio awaitables (``reactor=None``), Twisted Deferreds (a Twisted reactor), or
delegate method calls (``delegate=``). A delegated wormhole can be saved with
``w.serialize()`` and continued with ``wormhole.from_serialized(data, reactor,
delegate)``, optionally in journaled mode (:mod:`wormhole.journal`). :mod:`wormhole.transcribe` offers the older
blocking ``Initiator`` / ``Receiver``. Files and directories travel with
``send_file()`` / ``receive_offer()`` (asynchronous) or :mod:`wormhole.transfer`
(blocking). ``create(..., dilation=True)`` and ``w.dilate()`` give Dilation's durable
subchannels (:mod:`wormhole._dilation`: Twisted protocols as in the reference 0.24, the
seed's endpoints, or asyncio streams). Errors live in :mod:`wormhole.errors`.

This distribution must not share an environment with the reference ``magic-wormhole``
package, which installs a module of the same name.
"""

import atexit as _atexit

from wormhole import _native, errors
from wormhole._completion import CodeCompleter, input_with_completion
from wormhole._dilation import DilatedWormhole, SubchannelAddress
from wormhole._status import DilationStatus, WormholeStatus
from wormhole._transfer import Offer
from wormhole._wormhole import (
    DeferredWormhole,
    DelegatedWormhole,
    InputHelper,
    Wormhole,
    create,
    from_serialized,
)

#: The version of the Rust core this module wraps.
__version__ = _native.CORE_VERSION
#: The app id of the reference ``wormhole send`` / ``wormhole receive`` tool.
TRANSFER_APPID = _native.TRANSFER_APPID
#: The public mailbox server the reference CLI uses.
PUBLIC_RELAY_URL = _native.PUBLIC_RELAY_URL

# Stop delivering callbacks before the interpreter finalizes, so a wormhole left open at
# exit cannot touch a dying interpreter.
_atexit.register(_native._shutdown)

__all__ = [
    "CodeCompleter",
    "DeferredWormhole",
    "DelegatedWormhole",
    "DilatedWormhole",
    "DilationStatus",
    "InputHelper",
    "Offer",
    "PUBLIC_RELAY_URL",
    "SubchannelAddress",
    "TRANSFER_APPID",
    "Wormhole",
    "WormholeStatus",
    "create",
    "errors",
    "from_serialized",
    "input_with_completion",
    "__version__",
]
