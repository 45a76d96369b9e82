"""linksocks_rs: SOCKS5 over WebSocket, wire-compatible with the reference LinkSocks, on a
Rust engine. The API is the reference ``linksocks`` package's: code written for it runs with
the import line changed.

    from linksocks_rs import Server, Client

    async with Server(ws_port=8765) as srv:
        token = await srv.async_add_forward_token()
        async with Client(token, ws_url="ws://localhost:8765", socks_port=9870) as cli:
            ...  # SOCKS5 (and HTTP proxy) on 127.0.0.1:9870
"""

from ._base import (
    AccessRule,
    AuthenticationError,
    BindError,
    ConnectError,
    LinkSocksError,
    ReverseTokenResult,
    set_log_level,
)
from ._client import Client
from ._server import Server
from ._native import ENGINE_VERSION as __version__

__all__ = [
    "Server",
    "Client",
    "AccessRule",
    "ReverseTokenResult",
    "set_log_level",
    "LinkSocksError",
    "AuthenticationError",
    "BindError",
    "ConnectError",
]
