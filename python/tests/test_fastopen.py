"""FastOpen (SOCKS5 success before the far side has dialled) in every mode, and mixed: one
side with it, the other without.

What shows FastOpen at work: a CONNECT to a port where nothing listens is answered with
success (0) and then closed when the far side's dial fails; without it, the answer waits for
the dial and is a failure."""

import socket
import struct

import pytest

from linksocks_rs import Client, Server
from conftest import _read_exact, echo_through, eventually, free_port, started

DEAD = ("127.0.0.1", 9)  # discard: nothing listens there on loopback


def reply_to_dead_target(socks_port: int) -> int:
    """The SOCKS5 reply code to a CONNECT to a port where nothing listens."""
    with socket.create_connection(("127.0.0.1", socks_port), timeout=20) as s:
        s.sendall(b"\x05\x01\x00")
        assert _read_exact(s, 2) == b"\x05\x00"
        s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(DEAD[0]) + struct.pack(">H", DEAD[1]))
        return _read_exact(s, 4)[1]


def expect_reply(socks_port: int, fast: bool) -> None:
    code = reply_to_dead_target(socks_port)
    if fast:
        assert code == 0, f"FastOpen should answer success at once, got {code}"
    else:
        assert code != 0, "without FastOpen a refused dial is a failure reply"


@pytest.mark.parametrize("client_fast, server_fast", [(True, False), (False, True), (True, True), (False, False)])
def test_forward(echo, client_fast, server_fast):
    # Forward mode: the client answers the application; the server's setting has no say.
    with Server(ws_host="127.0.0.1", ws_port=free_port(), fast_open=server_fast) as srv:
        token = srv.add_forward_token()
        with started(Client(
            token,
            ws_url=f"ws://127.0.0.1:{srv.ws_port}",
            socks_port=free_port(),
            fast_open=client_fast,
        )) as cli:
            echo_through(cli.socks_port, echo)
            expect_reply(cli.socks_port, client_fast)


@pytest.mark.parametrize("server_fast, provider_fast", [(True, False), (False, True), (True, True)])
def test_reverse(echo, server_fast, provider_fast):
    # Reverse mode: the server answers the application.
    with Server(ws_host="127.0.0.1", ws_port=free_port(), fast_open=server_fast) as srv:
        res = srv.add_reverse_token()
        with started(Client(
            res.token,
            ws_url=f"ws://127.0.0.1:{srv.ws_port}",
            reverse=True,
            fast_open=provider_fast,
        )):
            eventually(lambda: _connects(res.port), "the reverse port opens")
            echo_through(res.port, echo)
            expect_reply(res.port, server_fast)


@pytest.mark.parametrize("connector_fast, server_fast", [(True, False), (False, True), (False, False)])
def test_agent(echo, connector_fast, server_fast):
    # Agent mode: the connector answers its application.
    with Server(ws_host="127.0.0.1", ws_port=free_port(), fast_open=server_fast) as srv:
        rev = srv.add_reverse_token()
        conn = srv.add_connector_token(None, rev.token)
        url = f"ws://127.0.0.1:{srv.ws_port}"
        with started(Client(rev.token, ws_url=url, reverse=True, fast_open=True)):
            with started(Client(
                conn, ws_url=url, socks_port=free_port(), fast_open=connector_fast
            )) as connector:
                echo_through(connector.socks_port, echo)
                expect_reply(connector.socks_port, connector_fast)


def _connects(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
