"""The SSRF guard: private, loopback, link-local, multicast, reserved and unspecified targets are refused
unless settings allow them; every address a name resolves to is checked; the checked one is pinned."""

from __future__ import annotations

import ipaddress

import pytest

from config.settings import WebhookSettings
from engram.webhooks.deliver import policy_of
from engram.webhooks.targets import Target, TargetPolicy, TargetRefused, TargetUnresolvable, check, pinned, refusal

DEFAULT = policy_of(WebhookSettings())
REFUSED = ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
           "224.0.0.1", "240.0.0.1", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::", "ff02::1"]
PUBLIC = ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"]


def resolver(*addresses: str):  # type: ignore[no-untyped-def]
    return lambda host, port: list(addresses)


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused_by_default(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), DEFAULT) is not None
    literal = f"[{address}]" if ":" in address else address
    with pytest.raises(TargetRefused):
        check(f"http://{literal}:8080/hook", DEFAULT)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), DEFAULT) is None


def test_names_are_resolved_and_every_address_must_pass() -> None:
    assert check("https://hooks.example/x", DEFAULT, resolver("93.184.216.34")).address == ipaddress.ip_address(
        "93.184.216.34"
    )
    with pytest.raises(TargetRefused, match="private"):
        check("https://hooks.example/x", DEFAULT, resolver("93.184.216.34", "10.0.0.7"))
    with pytest.raises(TargetRefused, match="loopback"):
        check("http://localhost:9/", DEFAULT)  # the system resolver
    with pytest.raises(TargetRefused):
        check("http://0x7f000001/", DEFAULT)  # 127.0.0.1 in disguise


def test_unresolvable_and_malformed_urls() -> None:
    with pytest.raises(TargetUnresolvable):
        check("http://no-such-host.invalid/", DEFAULT)
    for url in ("ftp://example.com/", "example.com/hook", "http:///path", "", "http://" + "a" * 2100):
        with pytest.raises(TargetRefused):
            check(url, DEFAULT, resolver("93.184.216.34"))


def test_settings_can_allow_networks_or_all_private_targets() -> None:
    loopback_only = policy_of(WebhookSettings(allowed_networks=["127.0.0.1/32"]))
    assert check("http://127.0.0.1:9/", loopback_only).address == ipaddress.ip_address("127.0.0.1")
    with pytest.raises(TargetRefused):
        check("http://10.0.0.1/", loopback_only)
    with pytest.raises(TargetRefused):
        check("http://[::1]/", loopback_only)
    anything_private = TargetPolicy.of(allow_private=True)
    assert check("http://10.0.0.1/", anything_private)
    with pytest.raises(TargetRefused):
        check("http://0.0.0.0/", anything_private)  # never: it means "this host" on Linux
    with pytest.raises(ValueError):
        WebhookSettings(allowed_networks=["not-a-network"])


def test_pinned_connects_to_the_checked_address_but_keeps_the_name() -> None:
    target = check("https://hooks.example:8443/in?x=1", DEFAULT, resolver("93.184.216.34"))
    url, headers, extensions = pinned(target)
    assert str(url) == "https://93.184.216.34:8443/in?x=1"
    assert headers == {"host": "hooks.example:8443"} and extensions == {"sni_hostname": "hooks.example"}
    v6 = Target(check("http://hooks.example/", DEFAULT, resolver("2606:4700:4700::1111")).url,
                ipaddress.ip_address("2606:4700:4700::1111"))
    assert str(pinned(v6)[0]) == "http://[2606:4700:4700::1111]/"
    literal = check("http://1.1.1.1/", DEFAULT)
    assert pinned(literal) == (literal.url, {}, {})
