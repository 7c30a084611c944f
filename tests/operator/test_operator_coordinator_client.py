"""The operator's coordinator client against a fake admin API on 127.0.0.1."""

from __future__ import annotations

import socket
import time

import pytest
from fake_coordinator import FakeCoordinator
from keychain.coordinator.admin_http import status_json
from keychain.operator.coordinator_client import (
    CoordinatorClient,
    CoordinatorError,
    CoordinatorUnavailable,
    RemovalRefused,
    parse_status,
)
from keychain.operator.stepping import ReadmissionHold

from keychain.proto import chain_pb2, coordinator_pb2


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_status_reads_the_chain_members_in_order_and_the_leader():
    with FakeCoordinator("mychain") as fake, CoordinatorClient([fake.url]) as client:
        fake.join("mychain-node-0", active=True)
        fake.join("mychain-node-1", active=True)
        fake.join("mychain-node-2")
        status = client.status()
    chain = status.chains["mychain"]
    assert status.leader == "mychain-coord-0"
    assert chain.epoch == fake.epoch
    assert [(m.id, m.role, m.state) for m in chain.members] == [
        ("mychain-node-0", "head", "active"),
        ("mychain-node-1", "tail", "active"),
        ("mychain-node-2", "syncing", "syncing"),
    ]
    assert chain.members[0].in_service and not chain.members[2].in_service


def test_status_reads_the_suspected_member_and_the_held_nodes_as_the_coordinator_writes_them():
    config = chain_pb2.ChainConfig(chain="mychain", epoch=9, members=[
        chain_pb2.Member(id="mychain-node-0", address="a:1"), chain_pb2.Member(id="mychain-node-2", address="c:1"),
    ])  # fmt: skip
    health = [coordinator_pb2.MemberHealth(id="mychain-node-2", healthy=True, suspected="it does not ack")]
    held = [coordinator_pb2.ReadmissionHold(node_id="mychain-node-1", remaining_ms=4000, removals=2, reason="links")]
    document = status_json(coordinator_pb2.ClusterStatus(
        leader="mychain-coord-0", chains=[coordinator_pb2.ChainStatus(config=config, health=health, held=held)],
    ))  # fmt: skip
    chain = parse_status(document).chains["mychain"]
    assert [(m.id, m.suspected) for m in chain.members] == [("mychain-node-0", ""), ("mychain-node-2", "it does not ack")]
    assert chain.held == (ReadmissionHold("mychain-node-1", 4000, 2, "links"),)


def test_a_member_that_does_not_answer_is_skipped_for_one_that_does():
    with FakeCoordinator("mychain") as fake, CoordinatorClient([closed_port_url(), fake.url]) as client:
        assert client.status().leader == "mychain-coord-0"


def test_no_member_answering_is_unavailable():
    with CoordinatorClient([closed_port_url()], timeout=0.5) as client, pytest.raises(CoordinatorUnavailable):
        client.status()


def test_removing_a_member_raises_the_epoch_and_removing_it_again_is_harmless():
    with FakeCoordinator("mychain") as fake, CoordinatorClient([fake.url]) as client:
        fake.join("mychain-node-0", active=True)
        fake.join("mychain-node-1", active=True)
        epoch = client.remove_member("mychain", "mychain-node-1")
        assert epoch == fake.epoch and fake.ids() == ["mychain-node-0"]
        assert client.remove_member("mychain", "mychain-node-1") is None


def test_the_last_active_member_is_refused_and_an_election_is_unavailable():
    with FakeCoordinator("mychain") as fake, CoordinatorClient([fake.url]) as client:
        fake.join("mychain-node-0", active=True)
        with pytest.raises(RemovalRefused, match="last active member"):
            client.remove_member("mychain", "mychain-node-0")
        fake.refuse_removals = True
        with pytest.raises(CoordinatorUnavailable):
            client.remove_member("mychain", "mychain-node-0")


@pytest.mark.parametrize(
    "payload",
    [[], {"chains": [{"name": "c"}]}, {"chains": [{"name": "c", "epoch": 1, "members": [{"id": "x"}]}]}],
)
def test_a_malformed_status_is_an_error(payload):
    with pytest.raises(CoordinatorError, match="malformed"):
        parse_status(payload)


class SlowRemovals(FakeCoordinator):
    """Answers a removal only after a drain as long as a real coordinator's (about 1.5 s to 5.3 s)."""

    drain = 2.4

    def remove(self, chain: str, member_id: str):
        time.sleep(self.drain)
        return super().remove(chain, member_id)


def test_a_removal_that_drains_longer_than_a_status_call_may_take_still_completes():
    with SlowRemovals("mychain") as fake, CoordinatorClient([fake.url]) as client:
        fake.join("mychain-node-0", active=True)
        fake.join("mychain-node-1", active=True)
        assert client.remove_member("mychain", "mychain-node-1") == fake.epoch
        assert fake.ids() == ["mychain-node-0"]
