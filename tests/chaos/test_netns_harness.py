"""The network-namespace harness itself: reachability, partitions, one-way drops, healing,
delay and loss, and that nothing is left behind. Echo servers stand in for KeychainDB."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from chaos_netns_helpers import ECHO_PORT, median_rtt, needs_netns, round_trip, start_echo

from keychain.testing.netns import NetnsError, Network

pytestmark = needs_netns()


def namespaces_now() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def can_connect(net: Network, src: str, dst: str, timeout: float = 0.5) -> bool:
    try:
        with net.connect(src, (net.address(dst), ECHO_PORT), timeout) as sock:
            return round_trip(sock) == b"ping"
    except OSError:
        return False


def udp_pair(net: Network, a: str, b: str) -> tuple[socket.socket, socket.socket]:
    socks = []
    for host in (a, b):
        sock = net.socket(host, socket.SOCK_DGRAM)
        sock.bind((net.address(host), 9100))
        sock.settimeout(0.5)
        socks.append(sock)
    return socks[0], socks[1]


def delivered(sender: socket.socket, receiver: socket.socket, to: str, message: bytes) -> bool:
    sender.sendto(message, (to, 9100))
    try:
        return receiver.recv(100) == message
    except TimeoutError:
        return False


def links_and_addresses_here() -> tuple[str, str]:
    ip = ["ip", "-o"]
    links = subprocess.run([*ip, "link"], capture_output=True, text=True, check=True).stdout
    addresses = subprocess.run([*ip, "addr"], capture_output=True, text=True, check=True).stdout
    return links, addresses


def test_hosts_reach_each_other_and_the_caller_namespace_is_untouched():
    before = links_and_addresses_here()
    with Network(["a", "b"]) as net:
        start_echo(net, "b")
        assert can_connect(net, "a", "b")
        assert can_connect(net, "b", "b")
        # Every link and address of the test lives inside its namespaces.
        assert links_and_addresses_here() == before


def test_processes_run_inside_their_host():
    with Network(["a", "b"]) as net:
        bind_b = f"import socket; s = socket.socket(); s.bind(({net.address('b')!r}, 0)); print('bound')"
        probe = net.popen("b", [sys.executable, "-P", "-c", bind_b], stdout=subprocess.PIPE)
        out, _ = probe.communicate(timeout=20)
        assert out.strip() == b"bound"
        # The same address does not exist in host a.
        wrong = net.popen("a", [sys.executable, "-P", "-c", bind_b], stderr=subprocess.PIPE)
        _, err = wrong.communicate(timeout=20)
        assert wrong.returncode != 0 and b"Cannot assign requested address" in err


def test_partition_cuts_new_and_established_connections_and_heal_restores_them():
    with Network(["a", "b", "c"]) as net:
        start_echo(net, "b")
        established = net.connect("a", (net.address("b"), ECHO_PORT), 2.0)
        assert round_trip(established) == b"ping"

        net.partition("a", "b")
        assert not can_connect(net, "a", "b")
        assert can_connect(net, "c", "b"), "a partition between a and b must not touch c"
        established.settimeout(0.5)
        with pytest.raises(TimeoutError):  # silent, like a broken link: no error, no reply
            round_trip(established, b"lost")

        net.heal()
        assert can_connect(net, "a", "b")
        established.settimeout(5.0)
        # TCP retransmits what the partition swallowed once the path is back.
        assert established.recv(4) == b"lost"
        established.close()


def test_one_way_partition_drops_only_one_direction():
    with Network(["a", "b"]) as net:
        sock_a, sock_b = udp_pair(net, "a", "b")
        assert delivered(sock_a, sock_b, net.address("b"), b"a->b before")
        net.drop("a", "b")
        assert not delivered(sock_a, sock_b, net.address("b"), b"a->b during")
        assert delivered(sock_b, sock_a, net.address("a"), b"b->a during")
        net.heal()
        assert delivered(sock_a, sock_b, net.address("b"), b"a->b after")


def test_a_port_dropped_one_way_cuts_its_own_connections_only():
    with Network(["a", "b", "c"]) as net:
        for host in ("a", "b"):
            start_echo(net, host)
        for direction in ("in", "out"):
            net.drop_port("b", ECHO_PORT, direction)
            assert not can_connect(net, "a", "b"), direction
            assert not can_connect(net, "c", "b"), direction
            assert can_connect(net, "b", "a"), direction  # b's own connections out still work
            net.heal()
            assert can_connect(net, "a", "b"), direction


def test_isolate_cuts_a_host_from_every_other():
    with Network(["a", "b", "c"]) as net:
        start_echo(net, "a")
        start_echo(net, "b")
        net.isolate("a")
        assert not can_connect(net, "b", "a")
        assert not can_connect(net, "c", "a")
        assert can_connect(net, "c", "b")
        net.heal_partitions()
        assert can_connect(net, "c", "a")


def test_delay_lengthens_round_trips_and_clearing_it_restores_them():
    delay = 0.015
    with Network(["a", "b"]) as net:
        start_echo(net, "b")
        sock = net.connect("a", (net.address("b"), ECHO_PORT), 5.0)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        base = median_rtt(sock, 15)
        mechanism = net.impair("a", delay=delay)
        assert mechanism in ("netem", "relay")
        slowed = median_rtt(sock, 15)
        net.heal()
        healed = median_rtt(sock, 15)
        # Each direction is delayed, so a round trip gains about twice the delay.
        assert slowed >= 1.5 * delay
        assert slowed > 5 * base
        assert healed < slowed / 5
        sock.close()


def test_loss_drops_a_share_of_packets():
    with Network(["a", "b"], seed=7) as net:
        sock_a, sock_b = udp_pair(net, "a", "b")
        assert delivered(sock_a, sock_b, net.address("b"), b"warm-up")  # neighbour entries resolved
        net.impair("a", loss=0.5)
        sock_b.settimeout(0.02)
        got = sum(delivered(sock_a, sock_b, net.address("b"), f"m{i}".encode()) for i in range(80))
        assert 15 <= got <= 65, got  # Binomial(80, 1/2): far outside this is not chance


def test_everything_is_removed_on_exit_even_after_a_failure():
    before = namespaces_now()
    with pytest.raises(RuntimeError, match="boom"), Network(["a", "b"], stop_timeout=0.5) as net:
        created = set(net.namespaces)
        echo = start_echo(net, "b")
        stubborn = net.popen("a", [sys.executable, "-P", "-c",
                                   "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                   "print('up', flush=True); time.sleep(60)"], stdout=subprocess.PIPE)
        assert stubborn.stdout is not None and stubborn.stdout.readline() == b"up\n"
        net.partition("a", "b")
        net.impair("b", delay=0.01)
        raise RuntimeError("boom")
    assert len(created) == 3
    assert not created & namespaces_now()
    assert namespaces_now() == before
    assert echo.poll() is not None and stubborn.poll() is not None


def test_two_networks_side_by_side_do_not_collide():
    with Network(["a"]) as one, Network(["a"]) as two:
        assert not set(one.namespaces) & set(two.namespaces)
        start_echo(one, "a")
        start_echo(two, "a")  # same address and port, separate worlds


def test_bad_requests_get_clear_errors():
    with pytest.raises(ValueError, match="host name"):
        Network(["Bad Name"])
    with pytest.raises(ValueError, match="unique"):
        Network(["a", "a"])
    with pytest.raises(ValueError, match="private"):
        Network(["a"], subnet="8.8.8.0/24")
    with Network(["a", "b"]) as net:
        with pytest.raises(ValueError, match="no host 'z'"):
            net.partition("a", "z")
        with pytest.raises(ValueError, match="itself"):
            net.drop("a", "a")
        with pytest.raises(ValueError, match="loss"):
            net.impair("a", loss=1.5)
        if not net.netem_supported():
            forced = Network(["x"], impairment="netem")
            with forced, pytest.raises(NetnsError, match="netem"):
                forced.impair("x", delay=0.01)
        # After the failed attempts the network still works.
        start_echo(net, "b")
        assert can_connect(net, "a", "b")
