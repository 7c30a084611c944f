"""Hosts added to and removed from a running network, extra addresses, and per-host hosts files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from chaos_netns_helpers import ECHO_PORT, needs_netns, round_trip, start_echo

from keychain.testing.netns import Network

pytestmark = needs_netns()


def resolve(net: Network, host: str, name: str) -> str:
    """What `name` resolves to for a process started in `host` (through its /etc/hosts)."""
    done = net.popen(host, ["getent", "hosts", name], stdout=subprocess.PIPE, text=True)
    out, _ = done.communicate(timeout=10)
    return out.split()[0] if out.split() else ""


def test_a_host_added_later_reaches_the_others_and_leaves_nothing_behind_when_removed():
    with Network(["a"]) as net:
        start_echo(net, "a")
        b = net.add_host("b")
        assert b.address != net.address("a")
        with net.connect("b", (net.address("a"), ECHO_PORT), 2.0) as sock:
            assert round_trip(sock) == b"ping"
        net.write_hosts_file("b", f"{net.address('a')} a.example\n")
        assert resolve(net, "b", "a.example") == net.address("a")
        namespace = b.namespace

        net.remove_host("b")
        assert namespace not in net.namespaces
        assert not (Path("/etc/netns") / namespace).exists()
        # The address is not handed to another host: the removed one may come back for it.
        assert net.add_host("c").address != b.address
        again = net.add_host("b", b.address)
        assert again.address == b.address


def test_an_extra_address_belongs_to_one_host_and_a_rewritten_hosts_file_is_seen_at_once():
    with Network(["a", "b"]) as net:
        virtual = net.free_address()
        net.add_address("a", virtual)
        net.write_hosts_file("b", f"{net.address('a')} svc.example\n")
        assert resolve(net, "b", "svc.example") == net.address("a")
        net.write_hosts_file("b", f"{virtual} svc.example\n")
        assert resolve(net, "b", "svc.example") == virtual
        with pytest.raises(ValueError, match="in use"):
            net.add_address("b", virtual)
    assert not list(Path("/etc/netns").glob(f"{net.prefix}-*")), "hosts files left behind"
