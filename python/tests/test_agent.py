"""Agent mode (connector tokens relayed to providers) and autonomy (providers register
their own connector tokens)."""

import asyncio

import pytest

from linksocks_rs import Client, ConnectError, LinkSocksError, Server
from conftest import started, echo_through, eventually, free_port


def test_connector(echo):
    with Server(ws_host="127.0.0.1", ws_port=free_port()) as srv:
        rev = srv.add_reverse_token()
        conn = srv.add_connector_token("conn-token", rev.token)
        url = f"ws://127.0.0.1:{srv.ws_port}"
        with started(Client(rev.token, ws_url=url, reverse=True)) as prov:
            with started(Client(conn, ws_url=url, socks_port=free_port())) as connector:
                echo_through(connector.socks_port, echo)
                eventually(lambda: connector.get_partners_count() == 1, "one provider reported")
                eventually(lambda: prov.get_partners_count() == 1, "one connector reported")


def test_autonomy(echo):
    async def main():
        async with Server(ws_host="127.0.0.1", ws_port=free_port()) as srv:
            rev = await srv.async_add_reverse_token(allow_manage_connector=True)
            url = f"ws://127.0.0.1:{srv.ws_port}"
            async with Client(rev.token, ws_url=url, reverse=True) as prov:
                token = await prov.async_add_connector("my-connector")
                assert token == "my-connector"
                generated = prov.add_connector(None)
                assert generated and generated != token
                async with Client(token, ws_url=url, socks_port=free_port()) as connector:
                    await asyncio.to_thread(echo_through, connector.socks_port, echo)
                prov.remove_connector(generated)
                # A removed connector token no longer authenticates.
                refused = Client(generated, ws_url=url, socks_port=free_port())
                with pytest.raises(LinkSocksError):
                    await refused.async_wait_ready(timeout=10)
                await refused.async_close()

    asyncio.run(main())


def test_autonomy_refused_without_permission():
    with Server(ws_host="127.0.0.1", ws_port=free_port()) as srv:
        rev = srv.add_reverse_token()  # providers may not manage connectors
        with started(Client(rev.token, ws_url=f"ws://127.0.0.1:{srv.ws_port}", reverse=True)) as prov:
            with pytest.raises(LinkSocksError, match="refused"):
                prov.add_connector("nope")


def test_provider_unreachable_without_reconnect():
    port = free_port()  # nothing listens there
    cli = Client("t", ws_url=f"ws://127.0.0.1:{port}", reverse=True)
    with pytest.raises(ConnectError, match="cannot connect"):
        cli.wait_ready(timeout=10)
    cli.close()
