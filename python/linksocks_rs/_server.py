"""The LinkSocks server, with the reference package's API."""

from __future__ import annotations

import logging
import warnings
from typing import Any, List, Optional

from . import _native
from ._base import (
    AccessRule,
    DurationLike,
    ReverseTokenResult,
    _Lifecycle,
    _register_logger,
    _rules_json,
    _seconds,
)


class Server(_Lifecycle):
    """WebSocket SOCKS5 proxy server.

    Forward mode: clients connect and the server makes the outbound connections for them.
    Reverse mode: the server runs SOCKS5 ports (one per reverse token) whose connections go
    out through the providers of that token.

    Created configured; ``wait_ready()`` (or ``with`` / ``async with``) starts it. Tokens may
    be added before or after.
    """

    def __init__(
        self,
        *,
        logger: Optional[logging.Logger] = None,
        ws_host: Optional[str] = None,
        ws_port: Optional[int] = None,
        socks_host: Optional[str] = None,
        port_pool: Optional[Any] = None,
        socks_wait_client: Optional[bool] = None,
        buffer_size: Optional[int] = None,
        api_key: Optional[str] = None,
        api_keys: Optional[List[str]] = None,
        channel_timeout: Optional[DurationLike] = None,
        connect_timeout: Optional[DurationLike] = None,
        connector_wait_provider: Optional[DurationLike] = None,
        fast_open: Optional[bool] = None,
        upstream_proxy: Optional[str] = None,
        upstream_username: Optional[str] = None,
        upstream_password: Optional[str] = None,
        direct_enable: Optional[bool] = None,
        direct_rendezvous_udp: Optional[bool] = None,
        direct_rendezvous_host: Optional[str] = None,
        direct_rendezvous_port: Optional[int] = None,
        entry_access_control: Optional[List[AccessRule]] = None,
        dial_access_control: Optional[List[AccessRule]] = None,
        # Beyond the reference; the defaults keep its behaviour.
        transport_grace: Optional[DurationLike] = None,
        tls_cert: Optional[str] = None,
        tls_key: Optional[str] = None,
        max_message_size: Optional[int] = None,
    ) -> None:
        """Configure a server.

        Args:
            logger: Python logger for this server's records (default ``linksocks_rs``)
            ws_host: WebSocket listen address (default ``0.0.0.0``)
            ws_port: WebSocket listen port (default 8765; 0: the system picks)
            socks_host: where reverse tokens' SOCKS5 ports listen (default ``127.0.0.1``)
            port_pool: not supported: ports without a number come from 1024-10240
            socks_wait_client: open a reverse token's SOCKS5 port only once a provider is
                connected (default True)
            buffer_size: largest batch of one channel's data in a message
            api_key: enables the HTTP API (``/api/*``) with this key
            api_keys: further keys accepted by the HTTP API
            channel_timeout: idle channels are closed after this (default 12 h)
            connect_timeout: outbound connections must be made within this (default 10 s)
            connector_wait_provider: how long a connector's request waits for a provider
            fast_open: reverse mode: answer SOCKS5 CONNECT before the provider has dialled
            upstream_proxy: reach targets through this proxy (``socks5://``, ``http://``)
            upstream_username, upstream_password: its credentials
            direct_*: accepted and ignored: there is no peer-to-peer transport here
            entry_access_control: rules for requests entering reverse SOCKS5 ports
            dial_access_control: rules for the destinations forward clients may reach
            transport_grace: how long channels outlive a lost link, waiting for their client
                to come back (default 30 s; 0: they end with the link)
            tls_cert, tls_key: serve https/wss with this certificate and key (PEM files)
            max_message_size: largest WebSocket message accepted (default 32 MiB)
        """
        if port_pool is not None:
            warnings.warn("port_pool is not supported and is ignored", stacklevel=2)
        if any(v is not None for v in (direct_enable, direct_rendezvous_udp,
                                       direct_rendezvous_host, direct_rendezvous_port)):
            warnings.warn(
                "direct_* options are ignored: there is no peer-to-peer transport",
                stacklevel=2,
            )
        keys = [k for k in [api_key, *(api_keys or [])] if k]
        self._what = "server"
        self._tag, self._logger = _register_logger(logger)
        self._native = _native.NativeServer(
            tag=self._tag,
            ws_host=ws_host if ws_host is not None else "0.0.0.0",
            ws_port=_port(ws_port, 8765, "ws_port"),
            socks_host=socks_host if socks_host is not None else "127.0.0.1",
            socks_wait_client=True if socks_wait_client is None else bool(socks_wait_client),
            buffer_size=None if buffer_size is None else int(buffer_size),
            api_keys=keys,
            channel_timeout=_seconds(channel_timeout, "channel_timeout"),
            connect_timeout=_seconds(connect_timeout, "connect_timeout"),
            connector_wait_provider=_seconds(connector_wait_provider, "connector_wait_provider"),
            fast_open=bool(fast_open),
            upstream_proxy=upstream_proxy,
            upstream_username=upstream_username,
            upstream_password=upstream_password,
            entry_rules=_rules_json(entry_access_control),
            dial_rules=_rules_json(dial_access_control),
            transport_grace=_seconds(transport_grace, "transport_grace"),
            connector_autonomy=False,
            tls_cert=tls_cert,
            tls_key=tls_key,
            max_message_size=max_message_size,
        )

    @property
    def log(self) -> logging.Logger:
        """The Python logger of this server."""
        return self._logger

    @property
    def ws_port(self) -> Optional[int]:
        """The bound WebSocket port, once started (the real one when 0 was asked)."""
        return self._native.ws_port()

    # ------------------------------------------------------------ tokens

    def add_forward_token(self, token: Optional[str] = None) -> str:
        """Add a forward token (generated if not given); returns it."""
        return self._native.add_forward_token(token)

    async def async_add_forward_token(self, token: Optional[str] = None) -> str:
        return self.add_forward_token(token)

    def add_forward_token_with_rules(
        self, token: Optional[str] = None, rules: Optional[List[AccessRule]] = None
    ) -> str:
        """Add a forward token whose clients may reach only what ``rules`` allow."""
        return self._native.add_forward_token(token, _rules_json(list(rules or [])))

    async def async_add_forward_token_with_rules(
        self, token: Optional[str] = None, rules: Optional[List[AccessRule]] = None
    ) -> str:
        return self.add_forward_token_with_rules(token, rules)

    def add_reverse_token(
        self,
        *,
        token: Optional[str] = None,
        port: Optional[int] = None,
        username: Optional[str] = None,
        password: Optional[str] = None,
        allow_manage_connector: Optional[bool] = None,
        rules: Optional[List[AccessRule]] = None,
    ) -> ReverseTokenResult:
        """Add a reverse token with its SOCKS5 port (from 1024-10240 if not given)."""
        tok, p = self._native.add_reverse_token(
            token,
            None if port is None else _port(port, 0, "port"),
            username,
            password,
            bool(allow_manage_connector),
            _rules_json(rules),
        )
        return ReverseTokenResult(token=tok, port=p)

    async def async_add_reverse_token(self, **kwargs: Any) -> ReverseTokenResult:
        # Waits (briefly) for a started server's SOCKS5 port: off the event loop.
        import asyncio

        return await asyncio.to_thread(lambda: self.add_reverse_token(**kwargs))

    def add_connector_token(self, connector_token: Optional[str], reverse_token: str) -> str:
        """Add a connector token for ``reverse_token`` (generated if not given)."""
        return self._native.add_connector_token(connector_token, reverse_token)

    async def async_add_connector_token(
        self, connector_token: Optional[str], reverse_token: str
    ) -> str:
        return self.add_connector_token(connector_token, reverse_token)

    def add_connector_token_with_rules(
        self,
        connector_token: Optional[str],
        reverse_token: str,
        rules: Optional[List[AccessRule]] = None,
    ) -> str:
        return self._native.add_connector_token(
            connector_token, reverse_token, _rules_json(list(rules or []))
        )

    async def async_add_connector_token_with_rules(
        self,
        connector_token: Optional[str],
        reverse_token: str,
        rules: Optional[List[AccessRule]] = None,
    ) -> str:
        return self.add_connector_token_with_rules(connector_token, reverse_token, rules)

    def remove_token(self, token: str) -> bool:
        """Remove a token (its clients are disconnected); whether it existed."""
        return self._native.remove_token(token)

    async def async_remove_token(self, token: str) -> bool:
        return self.remove_token(token)

    def get_client_count(self) -> int:
        """Authenticated client links, all tokens together."""
        return self._native.client_count()

    def has_clients(self) -> bool:
        return self.get_client_count() > 0

    def get_token_client_count(self, token: str) -> int:
        return self._native.token_client_count(token)

    def get_connector_wait_count(self, token: str) -> int:
        """Not tracked by this engine: always 0."""
        return 0



def _port(value: Optional[int], default: int, what: str) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not 0 <= value <= 65535:
        raise ValueError(f"{what} must be in 0..65535, not {value}")
    return value
