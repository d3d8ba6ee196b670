"""The SSRF guard on customer webhook URLs: literal checks, the resolver, no redirects."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import anyio
import pytest
from _notify_fakes import FakeHttp, http_server, notify_config
from aiohttp.abc import AbstractResolver, ResolveResult

from hub.notify import DeliveryError, Message, Target, UnsafeURLError, check_url
from hub.notify.channels import SlackChannel, WebhookChannel
from hub.notify.ssrf import GuardedResolver, mask_url, parse_networks

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1/hook", "loopback"),
        ("http://localhost:8080/hook", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]/hook", "loopback"),
        ("http://2130706433/hook", "loopback"),  # 127.0.0.1 as one decimal number
        ("http://0x7f.1/hook", "loopback"),
        ("http://017700000001/hook", "loopback"),  # octal
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.0.10/hook", "private"),
        ("http://100.64.0.1/hook", "carrier-grade NAT"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://[fe80::1]/hook", "link-local"),
        ("ftp://hooks.example.com/x", "must be http"),
        ("https://user:pw@hooks.example.com/x", "credentials"),
    ],
)
def test_internal_or_malformed_webhook_urls_are_refused_with_the_reason(url: str, why: str) -> None:
    with pytest.raises(UnsafeURLError, match=why) as info:
        check_url(url)
    assert "/hook" not in str(info.value)  # the URL (and any token in it) is not echoed


def test_public_urls_pass_and_an_operator_allow_list_opens_internal_networks() -> None:
    check_url("https://hooks.slack.com/services/T0/B0/x")
    check_url("http://93.184.216.34/hook")
    allow = parse_networks("127.0.0.0/8, 10.0.0.0/8")
    check_url("http://127.0.0.1:9000/hook", allow)
    check_url("http://10.1.2.3/hook", allow)
    with pytest.raises(UnsafeURLError):
        check_url("http://169.254.169.254/", allow)


def test_masked_urls_keep_only_scheme_and_host() -> None:
    assert (
        mask_url("https://hooks.slack.com/services/T0/B0/secret") == "https://hooks.slack.com/***"
    )
    assert mask_url("http://127.0.0.1:9000/x?token=1") == "http://127.0.0.1:9000/***"


class _Rebinding(AbstractResolver):
    """A DNS answer that turned internal after the URL was checked."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host, host="127.0.0.1", port=port, family=socket.AF_INET, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        return None


@pytest.fixture
async def guarded() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(resolver=GuardedResolver((), inner=_Rebinding()))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


def _message() -> Message:
    return Message("cust-1", "webhook", (), "https://dash.example")


async def test_dns_rebinding_to_loopback_is_refused_at_connect_time(
    guarded: aiohttp.ClientSession,
) -> None:
    channel = WebhookChannel(notify_config(allow_networks=()), guarded)
    with anyio.fail_after(10), pytest.raises(DeliveryError, match="loopback") as info:
        await channel.send(_message(), Target(url="http://hooks.example.com/secret-path"))
    assert not info.value.retryable
    assert "secret-path" not in str(info.value)


async def test_a_redirect_to_an_internal_address_is_not_followed() -> None:
    fake = FakeHttp()
    fake.redirect_to = "http://169.254.169.254/latest/meta-data/"
    async with http_server(fake), aiohttp.ClientSession() as session:
        channel = SlackChannel(notify_config(), session)  # the allow-list admits the fake
        with anyio.fail_after(10), pytest.raises(DeliveryError, match="redirects are refused"):
            await channel.send(_message(), Target(url=f"{fake.url}/services/x"))
    assert len(fake.requests) == 1  # the metadata address was never asked


async def test_a_send_to_an_address_outside_the_allow_list_is_refused_before_connecting() -> None:
    async with aiohttp.ClientSession() as session:
        channel = WebhookChannel(notify_config(allow_networks=()), session)
        for url in ("http://127.0.0.1:9/x", "http://[::1]:9/x", "http://2130706433:9/x"):
            with anyio.fail_after(10), pytest.raises(DeliveryError, match="loopback"):
                await channel.send(_message(), Target(url=url))
