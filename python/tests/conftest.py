"""Helpers of the integration tests: targets on loopback, a SOCKS5 client, free ports.

Everything listens on 127.0.0.1 or ::1 and is stopped at the end of its test.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from typing import Iterator, Optional, Tuple

import pytest

TIMEOUT = 20.0


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class EchoServer:
    """A TCP server that echoes every connection, on its own thread."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(128)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _serve(conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def close(self) -> None:
        self._stop = True
        self.sock.close()


class UdpEcho:
    """A UDP socket that sends every datagram back, on its own thread."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.host = host
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(65535)
            except OSError:
                return
            self.sock.sendto(data, peer)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    e = EchoServer()
    yield e
    e.close()


@pytest.fixture
def echo6() -> Iterator[EchoServer]:
    e = EchoServer("::1")
    yield e
    e.close()


def _addr(host: str, port: int) -> bytes:
    try:
        return b"\x01" + socket.inet_pton(socket.AF_INET, host) + struct.pack(">H", port)
    except OSError:
        pass
    try:
        return b"\x04" + socket.inet_pton(socket.AF_INET6, host) + struct.pack(">H", port)
    except OSError:
        name = host.encode()
        return b"\x03" + bytes([len(name)]) + name + struct.pack(">H", port)


def _read_exact(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError(f"closed after {len(out)} of {n} bytes")
        out += chunk
    return out


def _read_reply_addr(s: socket.socket, atyp: int) -> None:
    if atyp == 1:
        _read_exact(s, 6)
    elif atyp == 4:
        _read_exact(s, 18)
    else:
        _read_exact(s, _read_exact(s, 1)[0] + 2)


def socks5_connect(
    socks_port: int,
    host: str,
    port: int,
    auth: Optional[Tuple[str, str]] = None,
    socks_host: str = "127.0.0.1",
) -> socket.socket:
    """A TCP connection to ``host:port`` through the SOCKS5 proxy on ``socks_port``."""
    s = socket.create_connection((socks_host, socks_port), timeout=TIMEOUT)
    if auth:
        s.sendall(b"\x05\x01\x02")
        assert _read_exact(s, 2) == b"\x05\x02"
        u, p = auth[0].encode(), auth[1].encode()
        s.sendall(b"\x01" + bytes([len(u)]) + u + bytes([len(p)]) + p)
        assert _read_exact(s, 2)[1] == 0, "credentials refused"
    else:
        s.sendall(b"\x05\x01\x00")
        assert _read_exact(s, 2) == b"\x05\x00"
    s.sendall(b"\x05\x01\x00" + _addr(host, port))
    head = _read_exact(s, 4)
    if head[1] != 0:
        s.close()
        raise ConnectionRefusedError(f"SOCKS5 reply {head[1]}")
    _read_reply_addr(s, head[3])
    return s


def echo_through(socks_port: int, target: EchoServer, payload: bytes = b"", **kw) -> None:
    """One round trip of ``payload`` (default 64 KiB of pattern) to the echo server."""
    payload = payload or bytes(range(256)) * 256
    with socks5_connect(socks_port, target.host, target.port, **kw) as s:
        s.sendall(payload)
        assert _read_exact(s, len(payload)) == payload


def eventually(check, what: str, timeout: float = TIMEOUT) -> None:
    """Wait until ``check()`` is true, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


def udp_associate(socks_port: int) -> Tuple[socket.socket, Tuple[str, int]]:
    """A UDP ASSOCIATE: the TCP control connection and the relay address."""
    s = socket.create_connection(("127.0.0.1", socks_port), timeout=TIMEOUT)
    s.sendall(b"\x05\x01\x00")
    assert _read_exact(s, 2) == b"\x05\x00"
    s.sendall(b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00")
    head = _read_exact(s, 4)
    assert head[1] == 0, f"UDP ASSOCIATE refused: {head[1]}"
    if head[3] == 1:
        raw = _read_exact(s, 6)
        host = socket.inet_ntop(socket.AF_INET, raw[:4])
    else:
        raw = _read_exact(s, 18)
        host = socket.inet_ntop(socket.AF_INET6, raw[:16])
    port = struct.unpack(">H", raw[-2:])[0]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return s, (host, port)


def udp_round(relay: Tuple[str, int], target: UdpEcho, payload: bytes) -> bytes:
    """Send ``payload`` to the echo through the relay; what comes back (header removed)."""
    family = socket.AF_INET6 if ":" in relay[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as u:
        u.settimeout(2.0)
        header = b"\x00\x00\x00" + _addr(target.host, target.port)
        for _ in range(5):  # UDP: a datagram may be lost; try a few times
            u.sendto(header + payload, relay)
            try:
                data, _ = u.recvfrom(70000)
            except socket.timeout:
                continue
            assert data[:3] == b"\x00\x00\x00"
            atyp = data[3]
            skip = 4 + (6 if atyp == 1 else 18)
            return data[skip:]
    raise AssertionError("no UDP answer through the relay")


def started(client):
    """``client`` once ready (as the reference, ``with Client(...)`` does not wait)."""
    client.wait_ready(timeout=TIMEOUT)
    return client
