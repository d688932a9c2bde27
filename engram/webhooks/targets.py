"""The SSRF guard: a webhook may only reach public addresses unless settings say otherwise.

A URL is checked when a webhook is created or changed and again before every delivery (DNS may
have changed meanwhile). The delivery then connects to the address that was checked, not to
whatever a second lookup returns, so a DNS answer that flips between a public and a private
address (DNS rebinding) cannot slip through: see ``pinned``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]
ALLOWED_SCHEMES = ("http", "https")
MAX_URL_CHARS = 2000


class TargetRefused(ValueError):
    """The URL is malformed or reaches an address webhooks must not reach."""


class TargetUnresolvable(TargetRefused):
    """The host has no address right now (may be transient at delivery time)."""


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """Which non-public addresses are allowed. Default: none."""

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def of(cls, allow_private: bool, allowed_networks: Iterable[str] = ()) -> TargetPolicy:
        return cls(allow_private, tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks))


@dataclass(frozen=True, slots=True)
class Target:
    url: httpx.URL
    address: IPAddress  # the checked address a delivery connects to


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetUnresolvable(f"cannot resolve {host!r}: {exc}") from exc
    return [str(info[4][0]) for info in infos]


def refusal(address: IPAddress, policy: TargetPolicy) -> str | None:
    """Why ``address`` is refused, or None when it may be reached."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(address in network for network in policy.allowed_networks):
        return None
    if address.is_unspecified or address.is_multicast:
        return "an unspecified or multicast address"
    if address.is_global:
        return None
    if policy.allow_private:
        return None
    for kind in ("loopback", "link_local", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return f"a {kind.replace('_', '-')} address"
    return "a non-public address"


def parse(url: str) -> httpx.URL:
    if len(url) > MAX_URL_CHARS:
        raise TargetRefused(f"the URL is longer than {MAX_URL_CHARS} characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise TargetRefused(f"not a valid URL: {exc}") from exc
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise TargetRefused("the URL must start with http:// or https://")
    if not parsed.host:
        raise TargetRefused("the URL has no host")
    return parsed


def check(url: str, policy: TargetPolicy, resolve: Resolver = system_resolver) -> Target:
    """Parse, resolve and check ``url``; every address the host resolves to must be allowed."""
    parsed = parse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses: Sequence[str] = resolve(parsed.host, port)
    if not addresses:
        raise TargetUnresolvable(f"{parsed.host!r} has no address")
    checked = [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]  # drop an IPv6 zone id
    for address in checked:
        reason = refusal(address, policy)
        if reason is not None:
            raise TargetRefused(f"{parsed.host!r} resolves to {reason} ({address}); webhooks may not reach it")
    return Target(parsed, checked[0])


def pinned(target: Target) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """URL, headers and httpx extensions that connect to the checked address while the server still
    sees the original host (Host header; TLS SNI and certificate check against the hostname)."""
    url = target.url
    try:
        ipaddress.ip_address(url.host)
        return url, {}, {}  # an IP literal is already pinned
    except ValueError:
        pass
    host_header = url.host if url.port is None else f"{url.host}:{url.port}"
    extensions: dict[str, Any] = {"sni_hostname": url.host} if url.scheme == "https" else {}
    return url.copy_with(host=str(target.address)), {"host": host_header}, extensions
