"""FastOpen (SOCKS5 success before the far side has dialled) in every mode, and mixed:
one side with it, the other without."""

import pytest

from linksocks_rs import Client, Server
from conftest import echo_through, eventually, free_port, socks5_connect


@pytest.mark.parametrize("client_fast", [True, False])
def test_forward(echo, client_fast):
    with Server(ws_host="127.0.0.1", ws_port=free_port(), fast_open=not client_fast) as srv:
        token = srv.add_forward_token()
        with Client(
            token,
            ws_url=f"ws://127.0.0.1:{srv.ws_port}",
            socks_port=free_port(),
            fast_open=client_fast,
        ) as cli:
            echo_through(cli.socks_port, echo)


@pytest.mark.parametrize("server_fast", [True, False])
def test_reverse(echo, server_fast):
    with Server(ws_host="127.0.0.1", ws_port=free_port(), fast_open=server_fast) as srv:
        res = srv.add_reverse_token()
        with Client(
            res.token,
            ws_url=f"ws://127.0.0.1:{srv.ws_port}",
            reverse=True,
            fast_open=not server_fast,
        ):
            eventually(lambda: _connects(res.port), "the reverse port opens")
            echo_through(res.port, echo)


@pytest.mark.parametrize("connector_fast", [True, False])
def test_agent(echo, connector_fast):
    with Server(ws_host="127.0.0.1", ws_port=free_port(), fast_open=True) as srv:
        rev = srv.add_reverse_token()
        conn = srv.add_connector_token(None, rev.token)
        url = f"ws://127.0.0.1:{srv.ws_port}"
        with Client(rev.token, ws_url=url, reverse=True, fast_open=True):
            with Client(
                conn, ws_url=url, socks_port=free_port(), fast_open=connector_fast
            ) as connector:
                echo_through(connector.socks_port, echo)


def test_forward_refused_target_with_fast_open():
    # FastOpen answers success at once; a target that refuses then ends the connection.
    with Server(ws_host="127.0.0.1", ws_port=free_port()) as srv:
        token = srv.add_forward_token()
        with Client(
            token, ws_url=f"ws://127.0.0.1:{srv.ws_port}", socks_port=free_port(), fast_open=True
        ) as cli:
            s = socks5_connect(cli.socks_port, "127.0.0.1", free_port())
            s.settimeout(10)
            try:
                assert s.recv(1) == b""
            except ConnectionResetError:
                pass
            s.close()


def _connects(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
