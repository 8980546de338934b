"""Which `Host` a listener answers (proxy/dataplane/hosts.py, docs/security.md "DNS
rebinding"): names it is known by, `localhost`, and IP literals — the listener's own, or any when
it listens on a wildcard address."""

from __future__ import annotations

import pytest

from proxy.dataplane.hosts import listener_check, named_hosts

LOOPBACK = listener_check("127.0.0.1", ["https://admin.example.com:8443/base", "ops.internal"])


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:8081", True),
        ("127.0.0.1", True),
        ("localhost:8081", True),
        ("LocalHost.", True),
        ("admin.example.com", True),  # admin.publicUrl's host, any port
        ("ops.internal:9", True),
        ("rebound.attacker.test:8081", False),
        ("ops.internal.attacker.test", False),
        ("127.0.0.2", False),  # an IP literal, but not the listener's
        ("[::1]:8081", False),
        ("", False),
        ("a:b", False),
        ("[::1", False),
        (None, True),  # HTTP/1.0 without Host: no browser sends that
    ],
)
def test_a_loopback_listener(host: str | None, allowed: bool) -> None:
    assert LOOPBACK.allows(host) is allowed


def test_a_wildcard_listener_answers_any_ip_literal_and_only_listed_names() -> None:
    check = listener_check("0.0.0.0", ["proxy.example.com"])
    assert check.allows("10.1.2.3:8081") and check.allows("[fe80::1]")
    assert check.allows("proxy.example.com:8081")
    assert not check.allows("rebound.attacker.test")


def test_a_listener_named_by_host_name_answers_that_name() -> None:
    check = listener_check("admin.internal", [])
    assert check.allows("admin.internal:8081")
    assert not check.allows("other.internal")


def test_listen_hosts_of_the_data_plane() -> None:
    check = named_hosts(["signing-proxy", "Proxy.Svc.Cluster.Local."])
    for host in ("signing-proxy:8080", "proxy.svc.cluster.local", "localhost", "192.168.1.9"):
        assert check.allows(host), host
    assert not check.allows("rebound.attacker.test")
