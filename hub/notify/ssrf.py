"""SSRF guard for the webhook URLs customers give us (Slack, generic webhook).

A URL is refused unless it is ``http(s)://`` to a host whose every address is
public: no loopback, private (RFC 1918, ULA), link-local (169.254.0.0/16 with
the cloud metadata service, fe80::/10), CGNAT, multicast, reserved or
unspecified addresses, in any spelling (``[::1]``, ``2130706433``,
``0x7f.1``, IPv4-mapped IPv6). The operator may allow networks explicitly
(``RESMON_NOTIFY_ALLOW_NETWORKS``, e.g. an internal chat server, or the tests'
local fakes).

Three places enforce it:

* :func:`check_url` on the literal URL, when preferences are saved and before
  each send;
* :class:`GuardedResolver`, the resolver of the HTTP client's connector: it
  resolves the name once and hands aiohttp only vetted addresses, so DNS
  rebinding (public at check time, 127.0.0.1 at connect time) cannot slip
  through;
* the client never follows redirects (a 3xx is a delivery error).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import TypeAlias
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from ._exceptions import UnsafeURLError

__all__ = ["GuardedResolver", "Network", "check_address", "check_url", "mask_url", "parse_networks"]

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
IP: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")


def parse_networks(text: str) -> tuple[Network, ...]:
    """``"127.0.0.1/32, 10.0.0.0/8"`` -> networks; ValueError names a bad entry."""
    nets: list[Network] = []
    for part in text.replace(";", ",").split(","):
        if part := part.strip():
            try:
                nets.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"{part!r} is not an IP network (e.g. 10.0.0.0/8)") from None
    return tuple(nets)


def _unmapped(ip: IP) -> IP:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
    return ip


def check_address(ip: IP, allow: Sequence[Network] = ()) -> None:
    """Raise UnsafeURLError unless ``ip`` is public or inside an allowed network."""
    ip = _unmapped(ip)
    if any(ip.version == net.version and ip in net for net in allow):
        return
    why = None
    if ip.is_loopback:
        why = "loopback"
    elif ip.is_link_local:
        why = "link-local (cloud metadata lives here)"
    elif ip.is_unspecified:
        why = "unspecified"
    elif ip.is_multicast:
        why = "multicast"
    elif isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        why = "carrier-grade NAT"
    elif ip.is_private:
        why = "private"
    elif ip.is_reserved or not ip.is_global:
        why = "reserved"
    if why is not None:
        raise UnsafeURLError(
            f"webhook address {ip} is {why}; refused (an operator can allow it with "
            "RESMON_NOTIFY_ALLOW_NETWORKS)"
        )


def _literal(host: str) -> IP | None:
    """The address ``host`` spells, in any notation a resolver would accept."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:  # legacy IPv4 forms: 2130706433, 0x7f000001, 0177.0.0.1, 127.1
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def check_url(url: str, allow: Sequence[Network] = ()) -> None:
    """Refuse a webhook URL that is malformed, not http(s), or aims at an internal address.

    The message never contains the URL (it can carry a secret token).
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port
    except ValueError:
        raise UnsafeURLError("webhook URL is malformed") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeURLError("webhook URL must be http:// or https://")
    if not host:
        raise UnsafeURLError("webhook URL has no host")
    if parts.username or parts.password:
        raise UnsafeURLError("webhook URL must not contain credentials")
    if host.rstrip(".").lower() in ("localhost", "localhost.localdomain") or host.endswith(
        ".localhost"
    ):
        ip: IP | None = ipaddress.ip_address("127.0.0.1")
    else:
        ip = _literal(host)
    if ip is not None:
        check_address(ip, allow)


def mask_url(url: str | None) -> str | None:
    """``https://hooks.slack.com/services/T0/B0/secret`` -> ``https://hooks.slack.com/***``."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "***"
    return f"{parts.scheme}://{host}{port}/***"


class GuardedResolver(AbstractResolver):
    """Resolve through aiohttp's default resolver and refuse the name if any
    address of the name is internal (a mix is how rebinding attacks start)."""

    def __init__(self, allow: Sequence[Network] = (), inner: AbstractResolver | None = None):
        self._allow = tuple(allow)
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for r in results:
            check_address(ipaddress.ip_address(r["host"]), self._allow)
        return results

    async def close(self) -> None:
        await self._inner.close()
