"""UDP ASSOCIATE through the forward client's SOCKS5 port, to IPv4 and IPv6 targets."""

from linksocks_rs import Client, Server
from conftest import started, UdpEcho, free_port, udp_associate, udp_round


def _udp_through(target: UdpEcho) -> None:
    with Server(ws_host="127.0.0.1", ws_port=free_port()) as srv:
        token = srv.add_forward_token()
        with started(Client(token, ws_url=f"ws://127.0.0.1:{srv.ws_port}", socks_port=free_port())) as cli:
            ctl, relay = udp_associate(cli.socks_port)
            with ctl:
                for size in (1, 512, 8000):
                    payload = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
                    assert udp_round(relay, target, payload) == payload


def test_udp_ipv4():
    target = UdpEcho("127.0.0.1")
    try:
        _udp_through(target)
    finally:
        target.close()


def test_udp_ipv6():
    target = UdpEcho("::1")
    try:
        _udp_through(target)
    finally:
        target.close()
