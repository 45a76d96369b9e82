"""The API's edges: bad arguments, refused tokens, taken ports, timeouts, closing, garbage
collection, Ctrl-C, logging."""

import asyncio
import gc
import logging
import signal
import socket
import subprocess
import sys
import textwrap
import time
from datetime import timedelta

import pytest

import linksocks_rs
from linksocks_rs import (
    AccessRule,
    AuthenticationError,
    BindError,
    Client,
    ReverseTokenResult,
    Server,
)
from conftest import started, echo_through, eventually, free_port


def test_public_names():
    for name in ["Server", "Client", "AccessRule", "ReverseTokenResult", "set_log_level"]:
        assert name in linksocks_rs.__all__
    assert isinstance(linksocks_rs.__version__, str)


@pytest.mark.parametrize(
    "kwargs, exc, text",
    [
        ({"ws_port": 70000}, ValueError, "ws_port"),
        ({"ws_port": "8765"}, TypeError, "ws_port"),
        ({"channel_timeout": "soon"}, ValueError, "duration"),
        ({"connect_timeout": -1}, ValueError, "negative"),
        ({"upstream_proxy": "ftp://proxy"}, ValueError, "scheme"),
        ({"dial_access_control": [AccessRule(addrs=["not an address"])]}, ValueError, "rules"),
        ({"dial_access_control": ["10.0.0.0/8"]}, TypeError, "AccessRule"),
        ({"tls_cert": "cert.pem"}, ValueError, "together"),
    ],
)
def test_bad_server_arguments(kwargs, exc, text):
    with pytest.raises(exc, match=text):
        Server(**kwargs)


@pytest.mark.parametrize(
    "kwargs, exc, text",
    [
        ({"ws_url": "ftp://x"}, ValueError, "scheme"),
        ({"socks_port": -1}, ValueError, "socks_port"),
        ({"threads": -1}, ValueError, "threads"),
        ({"threads": "2"}, TypeError, "threads"),
        ({"reconnect_delay": timedelta(seconds=-1)}, ValueError, "negative"),
        ({"entry_access_control": [AccessRule(addrs=[], ports=[(10, 5)])]}, ValueError, "rules"),
    ],
)
def test_bad_client_arguments(kwargs, exc, text):
    with pytest.raises(exc, match=text):
        Client("t", **kwargs)


def test_buffer_larger_than_a_message_is_refused():
    srv = Server(ws_host="127.0.0.1", ws_port=free_port(), buffer_size=1 << 20,
                 max_message_size=64 << 10)
    with pytest.raises(ValueError, match="buffer_size"):
        srv.wait_ready()
    srv.close()


def test_durations_in_every_form():
    for value in (5, 2.5, timedelta(seconds=3), "1m30s", "300ms"):
        Server(connect_timeout=value, ws_port=free_port()).close()
    # A string duration is read as such: the wait gives up after 300 ms, not 300 s.
    cli = Client("t", ws_url=f"ws://127.0.0.1:{free_port()}", reconnect=True)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        cli.wait_ready(timeout="300ms")
    assert 0.25 <= time.monotonic() - start < 5
    cli.close()


def test_zero_means_no_limit_and_one_link(echo):
    with Server(ws_host="127.0.0.1", ws_port=free_port()) as srv:
        srv.wait_ready(timeout=0)  # as the reference: 0 is no limit
        token = srv.add_forward_token()
        cli = Client(token, ws_url=f"ws://127.0.0.1:{srv.ws_port}", socks_port=free_port(),
                     threads=0)
        cli.wait_ready(timeout=0)
        echo_through(cli.socks_port, echo)
        assert srv.get_token_client_count(token) == 1
        cli.close()


def test_wrong_token_raises_authentication_error():
    with Server(ws_host="127.0.0.1", ws_port=free_port()) as srv:
        srv.add_forward_token("right")
        cli = Client("wrong", ws_url=f"ws://127.0.0.1:{srv.ws_port}", socks_port=free_port())
        with pytest.raises(AuthenticationError, match="authentication failed"):
            cli.wait_ready(timeout=10)
        cli.close()


def test_port_in_use_raises_bind_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        srv = Server(ws_host="127.0.0.1", ws_port=port)
        with pytest.raises(BindError, match=str(port)):
            srv.wait_ready()
        srv.close()


def test_wait_ready_timeout():
    # Nobody answers there; with reconnect on, the client keeps trying.
    cli = Client("t", ws_url=f"ws://127.0.0.1:{free_port()}", reconnect=True)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        cli.wait_ready(timeout=0.5)
    assert time.monotonic() - start < 5
    cli.close()


def test_close_twice_and_after_failure(echo):
    srv = Server(ws_host="127.0.0.1", ws_port=free_port())
    srv.wait_ready()
    srv.close()
    srv.close()

    async def both():
        s = Server(ws_host="127.0.0.1", ws_port=free_port())
        await s.async_wait_ready()
        await s.async_close()
        await s.async_close()

    asyncio.run(both())


def test_garbage_collected_server_frees_its_port():
    port = free_port()
    srv = Server(ws_host="127.0.0.1", ws_port=port)
    srv.wait_ready()
    del srv
    gc.collect()

    def free():
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            return True

    eventually(free, "the port is released")


def test_reverse_token_result_and_tokens_before_start(echo):
    srv = Server(ws_host="127.0.0.1", ws_port=free_port())
    res = srv.add_reverse_token(token="r1", port=free_port())
    assert isinstance(res, ReverseTokenResult) and res.token == "r1"
    auto = srv.add_reverse_token()
    assert 1024 <= auto.port <= 10240
    conn = srv.add_connector_token(None, "r1")
    with pytest.raises(linksocks_rs.LinkSocksError, match="exists"):
        srv.add_forward_token("r1")
    srv.wait_ready()
    try:
        assert srv.get_client_count() == 0
        with started(Client(conn, ws_url=f"ws://127.0.0.1:{srv.ws_port}", socks_port=free_port())):
            pass
    finally:
        srv.close()


def test_access_rules_limit_forward_clients(echo):
    with Server(ws_host="127.0.0.1", ws_port=free_port()) as srv:
        token = srv.add_forward_token_with_rules(
            None, [AccessRule(addrs=["127.0.0.1"], ports=[echo.port])]
        )
        with started(Client(token, ws_url=f"ws://127.0.0.1:{srv.ws_port}", socks_port=free_port())) as cli:
            echo_through(cli.socks_port, echo)
            from conftest import socks5_connect

            with pytest.raises(ConnectionRefusedError):
                socks5_connect(cli.socks_port, "127.0.0.1", free_port()).close()


def test_log_records_reach_python_logging():
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger("test-linksocks")
    logger.setLevel(logging.INFO)
    logger.addHandler(Keep())
    with Server(logger=logger, ws_host="127.0.0.1", ws_port=free_port()) as srv:
        assert srv.log is logger
        eventually(
            lambda: any("listening" in r.getMessage() for r in records),
            "the server's listening line reaches its logger",
        )


def test_ctrl_c_interrupts_a_blocking_wait():
    # The child waits forever (reconnect on, nobody listening) until Ctrl-C.
    script = textwrap.dedent(
        f"""
        import sys
        from linksocks_rs import Client
        c = Client("t", ws_url="ws://127.0.0.1:{free_port()}", reconnect=True)
        try:
            print("waiting", flush=True)
            c.wait_ready()
        except KeyboardInterrupt:
            c.close()
            print("interrupted", flush=True)
            sys.exit(0)
        sys.exit(3)
        """
    )
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "waiting"
        sent = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=20)
        assert p.returncode == 0, out
        assert "interrupted" in out
        assert time.monotonic() - sent < 5, "Ctrl-C took long to reach Python"
    finally:
        p.kill()
