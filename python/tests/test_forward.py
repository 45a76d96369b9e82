"""Forward mode: the SOCKS5 port on the client, the server dials."""

import asyncio
import socket
import time

import pytest

from linksocks_rs import Client, Server
from conftest import started, EchoServer, echo_through, eventually, free_port, socks5_connect


def test_forward_basic(echo):
    with Server(ws_host="127.0.0.1", ws_port=free_port()) as srv:
        token = srv.add_forward_token()
        url = f"ws://127.0.0.1:{srv.ws_port}"
        with started(Client(token, ws_url=url, socks_port=free_port())) as cli:
            assert cli.is_connected
            echo_through(cli.socks_port, echo)
            assert srv.get_token_client_count(token) == 1
            assert srv.has_clients()


def test_forward_async(echo):
    async def main():
        async with Server(ws_host="127.0.0.1", ws_port=free_port()) as srv:
            token = await srv.async_add_forward_token("async-token")
            assert token == "async-token"
            async with Client(
                token, ws_url=f"ws://127.0.0.1:{srv.ws_port}", socks_port=free_port()
            ) as cli:
                await asyncio.to_thread(echo_through, cli.socks_port, echo)
                assert cli.is_connected
            assert not cli.is_connected

    asyncio.run(main())


def test_async_waits_do_not_block_the_event_loop(echo):
    """A client waits about a second for a server that a task of the same loop starts
    meanwhile: a blocking wait would hold the loop, the server would never start, and the
    loop's ticks would stop."""

    async def main():
        port = free_port()
        cli = Client("tok", ws_url=f"ws://127.0.0.1:{port}", socks_port=free_port(),
                     reconnect=True, reconnect_delay=0.1)
        gaps = []

        async def ticker():
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        async def late_server():
            await asyncio.sleep(1.0)
            srv = Server(ws_host="127.0.0.1", ws_port=port)
            srv.add_forward_token("tok")
            await srv.async_wait_ready()
            return srv

        tick = asyncio.create_task(ticker())
        server_task = asyncio.create_task(late_server())
        start = time.monotonic()
        await cli.async_wait_ready(timeout=20)
        waited = time.monotonic() - start
        srv = await server_task
        await asyncio.to_thread(echo_through, cli.socks_port, echo)
        await cli.async_close()
        await srv.async_close()
        tick.cancel()
        assert waited >= 0.9, f"the client was ready before its server started ({waited:.2f} s)"
        assert max(gaps) < 0.5, f"the event loop stalled for {max(gaps):.2f} s"

    asyncio.run(main())


def test_token_added_before_start_and_removed(echo):
    srv = Server(ws_host="127.0.0.1", ws_port=free_port())
    token = srv.add_forward_token()  # before wait_ready, as the reference allows
    srv.wait_ready()
    try:
        url = f"ws://127.0.0.1:{srv.ws_port}"
        cli = Client(token, ws_url=url, socks_port=free_port(), reconnect=True)
        cli.wait_ready(timeout=10)
        echo_through(cli.socks_port, echo)
        assert srv.remove_token(token) is True
        assert srv.remove_token(token) is False
        # The removed token's client is disconnected and cannot get back in.
        eventually(lambda: not cli.is_connected, "the client is disconnected")
        with pytest.raises(ConnectionRefusedError):
            socks5_connect(cli.socks_port, echo.host, echo.port).close()
        cli.close()
    finally:
        srv.close()


def test_ipv6(echo6):
    with Server(ws_host="::1", ws_port=free_port("::1")) as srv:
        token = srv.add_forward_token()
        with started(Client(
            token,
            ws_url=f"ws://[::1]:{srv.ws_port}",
            socks_host="::1",
            socks_port=free_port("::1"),
        )) as cli:
            echo_through(cli.socks_port, echo6, socks_host="::1")


def test_threads(echo):
    with Server(ws_host="127.0.0.1", ws_port=free_port()) as srv:
        token = srv.add_forward_token()
        with started(Client(
            token, ws_url=f"ws://127.0.0.1:{srv.ws_port}", socks_port=free_port(), threads=3
        )) as cli:
            eventually(lambda: srv.get_token_client_count(token) == 3, "three links")
            socks = [socks5_connect(cli.socks_port, echo.host, echo.port) for _ in range(12)]
            for i, s in enumerate(socks):
                s.sendall(bytes([i]) * 1000)
            for i, s in enumerate(socks):
                got = b""
                while len(got) < 1000:
                    got += s.recv(1000 - len(got))
                assert got == bytes([i]) * 1000
                s.close()


def test_forward_reconnect(echo):
    port = free_port()
    srv = Server(ws_host="127.0.0.1", ws_port=port)
    srv.add_forward_token("tok")
    srv.wait_ready()
    cli = Client(
        "tok",
        ws_url=f"ws://127.0.0.1:{port}",
        socks_port=free_port(),
        reconnect=True,
        reconnect_delay=0.1,
    )
    try:
        cli.wait_ready(timeout=10)
        echo_through(cli.socks_port, echo)
        srv.close()
        eventually(lambda: not cli.is_connected, "the client notices the server is gone")
        srv = Server(ws_host="127.0.0.1", ws_port=port)
        srv.add_forward_token("tok")
        srv.wait_ready()
        eventually(lambda: cli.is_connected, "the client reconnects")
        echo_through(cli.socks_port, echo)
    finally:
        cli.close()
        srv.close()


def test_socks_credentials(echo):
    with Server(ws_host="127.0.0.1", ws_port=free_port()) as srv:
        token = srv.add_forward_token()
        with started(Client(
            token,
            ws_url=f"ws://127.0.0.1:{srv.ws_port}",
            socks_port=free_port(),
            socks_username="u",
            socks_password="p",
        )) as cli:
            echo_through(cli.socks_port, echo, auth=("u", "p"))
            with socket.create_connection(("127.0.0.1", cli.socks_port)) as s:
                s.sendall(b"\x05\x01\x00")  # no-auth only: refused
                assert s.recv(2) == b"\x05\xff"
