"""Reverse mode: the SOCKS5 port on the server, providers dial."""

import asyncio

from linksocks_rs import Client, Server
from conftest import started, echo_through, eventually, free_port


def test_reverse_basic(echo):
    with Server(ws_host="127.0.0.1", ws_port=free_port()) as srv:
        res = srv.add_reverse_token()
        assert res.token and res.port
        with started(Client(res.token, ws_url=f"ws://127.0.0.1:{srv.ws_port}", reverse=True)) as prov:
            assert prov.is_connected
            assert prov.socks_port is None  # a provider has no SOCKS5 port of its own
            eventually(lambda: _listening(res.port), "the reverse SOCKS5 port opens")
            echo_through(res.port, echo)


def test_reverse_async_with_credentials(echo):
    async def main():
        async with Server(ws_host="127.0.0.1", ws_port=free_port()) as srv:
            res = await srv.async_add_reverse_token(
                token="rtok", port=free_port(), username="u", password="p"
            )
            assert res.token == "rtok"
            async with Client("rtok", ws_url=f"ws://127.0.0.1:{srv.ws_port}", reverse=True):
                await asyncio.to_thread(
                    eventually, lambda: _listening(res.port), "the SOCKS5 port opens"
                )
                await asyncio.to_thread(echo_through, res.port, echo, auth=("u", "p"))

    asyncio.run(main())


def test_reverse_reconnect(echo):
    """The server restarts; the provider (reconnect on) comes back by itself."""
    port, socks = free_port(), free_port()

    def server():
        srv = Server(ws_host="127.0.0.1", ws_port=port, socks_wait_client=False)
        srv.add_reverse_token(token="rtok", port=socks)
        srv.wait_ready()
        return srv

    srv = server()
    prov = Client("rtok", ws_url=f"ws://127.0.0.1:{port}", reverse=True, reconnect=True,
                  reconnect_delay=0.1)
    try:
        prov.wait_ready(timeout=10)
        echo_through(socks, echo)
        srv.close()
        eventually(lambda: not prov.is_connected, "the provider notices the server is gone")
        srv = server()
        eventually(lambda: prov.is_connected, "the provider reconnects")
        eventually(lambda: srv.get_token_client_count("rtok") == 1, "the server counts it")
        echo_through(socks, echo)
    finally:
        prov.close()
        srv.close()


def test_another_provider_takes_over(echo):
    with Server(ws_host="127.0.0.1", ws_port=free_port(), socks_wait_client=False) as srv:
        res = srv.add_reverse_token()
        url = f"ws://127.0.0.1:{srv.ws_port}"
        prov = Client(res.token, ws_url=url, reverse=True)
        prov.wait_ready(timeout=10)
        echo_through(res.port, echo)
        prov.close()
        eventually(lambda: srv.get_token_client_count(res.token) == 0, "the provider leaves")
        # Another provider of the same token takes over the same SOCKS5 port.
        prov = Client(res.token, ws_url=url, reverse=True)
        prov.wait_ready(timeout=10)
        echo_through(res.port, echo)
        prov.close()


def test_two_providers_of_one_token(echo):
    with Server(ws_host="127.0.0.1", ws_port=free_port()) as srv:
        res = srv.add_reverse_token()
        url = f"ws://127.0.0.1:{srv.ws_port}"
        with started(Client(res.token, ws_url=url, reverse=True)), started(Client(
            res.token, ws_url=url, reverse=True
        )):
            eventually(lambda: srv.get_token_client_count(res.token) == 2, "two providers")
            for _ in range(6):
                echo_through(res.port, echo, payload=b"x" * 1000)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
