"""The LinkSocks client, with the reference package's API."""

from __future__ import annotations

import logging
import warnings
from typing import Any, List, Optional

from . import _native
from ._base import (
    AccessRule,
    DurationLike,
    _Lifecycle,
    _awaitable,
    _register_logger,
    _rules_json,
    _seconds,
)
from ._server import _port


class Client(_Lifecycle):
    """WebSocket SOCKS5 proxy client.

    Forward mode (default): a SOCKS5 (and HTTP proxy) port here whose connections leave from
    the server. Reverse mode (``reverse=True``, a provider): the server's SOCKS5 users reach
    targets through this machine.

    Created configured; ``wait_ready()`` (or ``with`` / ``async with``) starts it.
    """

    def __init__(
        self,
        token: Optional[str] = None,
        *,
        logger: Optional[logging.Logger] = None,
        ws_url: Optional[str] = None,
        reverse: Optional[bool] = None,
        socks_host: Optional[str] = None,
        socks_port: Optional[int] = None,
        socks_username: Optional[str] = None,
        socks_password: Optional[str] = None,
        socks_wait_server: Optional[bool] = None,
        reconnect: Optional[bool] = None,
        reconnect_delay: Optional[DurationLike] = None,
        buffer_size: Optional[int] = None,
        channel_timeout: Optional[DurationLike] = None,
        connect_timeout: Optional[DurationLike] = None,
        threads: Optional[int] = None,
        fast_open: Optional[bool] = None,
        upstream_proxy: Optional[str] = None,
        upstream_username: Optional[str] = None,
        upstream_password: Optional[str] = None,
        no_env_proxy: Optional[bool] = None,
        direct_mode: Optional[str] = None,
        direct_discovery: Optional[str] = None,
        direct_host_candidates: Optional[str] = None,
        stun_servers: Optional[List[str]] = None,
        direct_only_action: Optional[str] = None,
        direct_upnp: Optional[bool] = None,
        direct_upnp_lease: Optional[DurationLike] = None,
        direct_upnp_keep: Optional[bool] = None,
        direct_upnp_external_port: Optional[int] = None,
        entry_access_control: Optional[List[AccessRule]] = None,
        dial_access_control: Optional[List[AccessRule]] = None,
        # Beyond the reference; the defaults keep its behaviour.
        transport_grace: Optional[DurationLike] = None,
        tls_ca: Optional[str] = None,
        tls_insecure: Optional[bool] = None,
        max_message_size: Optional[int] = None,
        retry_auth: Optional[bool] = None,
        connector_token: Optional[str] = None,
    ) -> None:
        """Configure a client.

        Args:
            token: the token to present (``anonymous`` when omitted)
            logger: Python logger for this client's records (default ``linksocks_rs``)
            ws_url: the server (default ``ws://localhost:8765``)
            reverse: be a reverse provider
            socks_host, socks_port: the SOCKS5 port of a forward client (default
                ``127.0.0.1:9870``; port 0: the system picks, ``socks_port`` tells)
            socks_username, socks_password: credentials SOCKS5 users must give
            socks_wait_server: open the SOCKS5 port only once connected (default True)
            reconnect: reconnect after the link is lost (default False, as the reference's
                library; the CLI reconnects)
            reconnect_delay: first delay before reconnecting (default 5 s, as the reference; later
                attempts back off by 1.5x up to 10 min)
            buffer_size: largest batch of one channel's data in a message
            channel_timeout: idle channels are closed after this (default 12 h)
            connect_timeout: connections must be made within this (default 10 s)
            threads: WebSocket links to keep open (default 1; 0 counts as 1)
            fast_open: answer SOCKS5 CONNECT before the server has dialled
            upstream_proxy: reach the server through this proxy (``socks5://``, ``http://``)
            upstream_username, upstream_password: its credentials
            no_env_proxy: ignore HTTP(S)_PROXY / ALL_PROXY (default False)
            direct_*, stun_servers: accepted and ignored: there is no peer-to-peer transport
            entry_access_control: rules for requests entering the SOCKS5 port
            dial_access_control: a provider's rules for what it dials
            transport_grace: how long channels outlive a lost link (default 30 s)
            tls_ca: trust this CA (PEM) for wss:// besides the built-in roots
            tls_insecure: accept any certificate (testing only)
            max_message_size: largest WebSocket message accepted (default 32 MiB)
            retry_auth: keep trying after the server refused the token
            connector_token: provider with autonomy: register this connector token
        """
        if any(v is not None for v in (direct_mode, direct_discovery, direct_host_candidates,
                                       stun_servers, direct_only_action, direct_upnp,
                                       direct_upnp_lease, direct_upnp_keep,
                                       direct_upnp_external_port)):
            warnings.warn(
                "direct_* options are ignored: there is no peer-to-peer transport",
                stacklevel=2,
            )
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)):
            raise TypeError(f"threads must be an int, not {type(threads).__name__}")
        if threads is not None and threads < 0:
            raise ValueError(f"threads must not be negative, not {threads}")
        self._what = "client"
        self._tag, self._logger = _register_logger(logger)
        self._native = _native.NativeClient(
            tag=self._tag,
            token=token,
            ws_url=ws_url if ws_url is not None else "ws://localhost:8765",
            reverse=bool(reverse),
            socks_host=socks_host if socks_host is not None else "127.0.0.1",
            socks_port=_port(socks_port, 9870, "socks_port"),
            socks_username=socks_username,
            socks_password=socks_password,
            socks_wait_server=True if socks_wait_server is None else bool(socks_wait_server),
            reconnect=bool(reconnect),
            reconnect_delay=_seconds(5 if reconnect_delay is None else reconnect_delay, "reconnect_delay"),
            buffer_size=None if buffer_size is None else int(buffer_size),
            channel_timeout=_seconds(channel_timeout, "channel_timeout"),
            connect_timeout=_seconds(connect_timeout, "connect_timeout"),
            threads=max(1, threads or 1),
            fast_open=bool(fast_open),
            upstream_proxy=upstream_proxy,
            upstream_username=upstream_username,
            upstream_password=upstream_password,
            no_env_proxy=bool(no_env_proxy),
            entry_rules=_rules_json(entry_access_control),
            dial_rules=_rules_json(dial_access_control),
            transport_grace=_seconds(transport_grace, "transport_grace"),
            tls_ca=tls_ca,
            tls_insecure=bool(tls_insecure),
            max_message_size=max_message_size,
            retry_auth=bool(retry_auth),
            connector_token=connector_token,
        )

    @property
    def log(self) -> logging.Logger:
        """The Python logger of this client."""
        return self._logger

    def __enter__(self) -> "Client":
        # As the reference: `with` does not wait (call wait_ready); `async with` does.
        return self

    @property
    def is_connected(self) -> bool:
        """Whether a link to the server is authenticated now."""
        return self._native.is_connected()

    def get_partners_count(self) -> int:
        """How many partners the server last reported: providers of this connector's token,
        or connectors of this provider's (0 before any report)."""
        return self._native.partners()

    @property
    def socks_port(self) -> Optional[int]:
        """The SOCKS5 port of a forward client, once open."""
        return self._native.socks_port()

    @property
    def connector_token(self) -> Optional[str]:
        """A provider's connector token registered at start (``connector_token=`` given)."""
        return self._native.connector_token()


    def add_connector(self, connector_token: Optional[str]) -> str:
        """Provider: have the server register a connector token (generated if not given)."""
        return self._native.add_connector(connector_token)

    async def async_add_connector(self, connector_token: Optional[str]) -> str:
        return await _awaitable(
            lambda done: self._native.add_connector_async(done, connector_token)
        )

    def remove_connector(self, connector_token: str) -> None:
        """Provider: have the server remove a connector token."""
        self._native.remove_connector(connector_token)
