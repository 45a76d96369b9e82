"""Throughput of a tunnel made from Python: ours (linksocks_rs) against the reference package
(linksocks), in the same run.

    python3 -m venv /tmp/bench && /tmp/bench/bin/pip install ./python "linksocks==1.10.1"
    /tmp/bench/bin/python python/bench/throughput.py [--mib 256] [--rounds 3]

A forward server and client of each package run in this process on 127.0.0.1; a plain
socket downloads MIB mebibytes from a loopback source through the client's SOCKS5 port.
Rounds alternate between the packages; medians are printed, with the CPU time this process
used during each download (both packages run their engine in-process). The reference client
runs with direct_mode="relay-only", so it never contacts a public STUN server.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import struct
import threading
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def source(total: int) -> int:
    """A loopback server sending ``total`` bytes to each connection."""
    l = socket.socket()
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("127.0.0.1", 0))
    l.listen(8)
    chunk = os.urandom(1 << 20)

    def serve(c: socket.socket) -> None:
        with c:
            left = total
            while left:
                n = min(left, len(chunk))
                c.sendall(chunk[:n])
                left -= n

    def run() -> None:
        while True:
            c, _ = l.accept()
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=run, daemon=True).start()
    return l.getsockname()[1]


def download(socks_port: int, target_port: int, total: int) -> tuple[float, float]:
    """Seconds and process CPU seconds to receive ``total`` bytes through SOCKS5."""
    s = socket.create_connection(("127.0.0.1", socks_port))
    s.sendall(b"\x05\x01\x00")
    assert s.recv(2) == b"\x05\x00"
    s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack(">H", target_port))
    reply = b""
    while len(reply) < 10:
        reply += s.recv(10 - len(reply))
    assert reply[1] == 0, f"SOCKS5 reply {reply[1]}"
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    got = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    while got < total:
        n = s.recv_into(view)
        if n == 0:
            raise ConnectionError(f"closed after {got} bytes")
        got += n
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    s.close()
    return elapsed, cpu


def tunnel(pkg):
    """A started forward server and client of package ``pkg``; (server, client, socks)."""
    ws, sp = free_port(), free_port()
    srv = pkg.Server(ws_host="127.0.0.1", ws_port=ws)
    token = srv.add_forward_token()
    srv.wait_ready(timeout=30)
    extra = {"direct_mode": "relay-only"} if pkg.__name__ == "linksocks" else {}
    cli = pkg.Client(token, ws_url=f"ws://127.0.0.1:{ws}", socks_port=sp, **extra)
    cli.wait_ready(timeout=30)
    return srv, cli, sp


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    total = args.mib << 20

    import linksocks
    import linksocks_rs

    target = source(total)
    results: dict[str, list[tuple[float, float]]] = {"linksocks_rs": [], "linksocks": []}
    tunnels = {p.__name__: tunnel(p) for p in (linksocks_rs, linksocks)}
    for _ in range(args.rounds):
        for name in ("linksocks_rs", "linksocks"):
            results[name].append(download(tunnels[name][2], target, total))
    for srv, cli, _ in tunnels.values():
        cli.close()
        srv.close()

    print(f"{args.mib} MiB download through a forward tunnel, {args.rounds} rounds, medians:")
    print("| package | MB/s | seconds | CPU-s of the process |")
    print("|---|---:|---:|---:|")
    for name, rs in results.items():
        secs = statistics.median(r[0] for r in rs)
        cpu = statistics.median(r[1] for r in rs)
        version = getattr(__import__(name), "__version__", "?")
        print(f"| {name} {version} | {total / secs / 1e6:,.0f} | {secs:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
