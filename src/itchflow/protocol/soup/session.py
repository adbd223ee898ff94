"""Old import path (one release): SoupBinTCP is now split by concept, re-exported here.

wire.soupbintcp (layouts, encode/decode, run kernels), protocol.soup.events, .stream,
.client, .server, .store.
"""

from itchflow.protocol.soup import *  # noqa: F401,F403
from itchflow.protocol.soup import __all__  # noqa: F401
