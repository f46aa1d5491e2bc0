"""uvicorn's websocket protocol with a fixed kernel send buffer on every websocket connection.

Linux grows a socket's send buffer up to the maximum of ``net.ipv4.tcp_wmem`` (4 MiB by
default). For a client that stops reading, the server would keep writing thousands of
events into that buffer before a send blocks and the client's bounded hub queue fills up,
so a stalled client would pin megabytes of kernel memory and be noticed late. Setting
``SO_SNDBUF`` caps that buffer (Linux doubles the value for its bookkeeping and stops
resizing it), so a stalled client is disconnected after about ``send_buffer_bytes`` plus
uvicorn's 64 KiB write buffer plus ``Settings.ws_queue_size`` messages.
"""

import logging
import socket

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

logger = logging.getLogger(__name__)


def bounded_websocket_protocol(send_buffer_bytes: int) -> type[WebSocketsSansIOProtocol]:
    """Return a uvicorn websocket protocol class that sets ``SO_SNDBUF`` on each connection."""

    class BoundedSendBufferProtocol(WebSocketsSansIOProtocol):
        def connection_made(self, transport) -> None:
            connection = transport.get_extra_info("socket")
            if connection is not None:
                try:
                    connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
                except OSError as exc:
                    logger.warning("could not set the websocket send buffer size: %s", exc)
            super().connection_made(transport)

    return BoundedSendBufferProtocol
