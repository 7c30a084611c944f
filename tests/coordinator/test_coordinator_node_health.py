"""Node health at the coordinator leader: one record of when each node's lease was last renewed.

`healthy` in the cluster status means "the lease the leader last granted may still run" (the
failure detector's own record); the leader forgets the heartbeat figures of a node that has
left its chain.
"""

from __future__ import annotations

import asyncio

import pytest
from coordinator_shell_harness import main_chain_cluster  # noqa: F401 (the `cluster` fixture)
from keychain.coordinator.registry import remove_node
from prometheus_client import generate_latest

from keychain import timing
from keychain.proto import coordinator_pb2

pytestmark = pytest.mark.timeout(60)


def health_of(status: coordinator_pb2.ClusterStatus) -> dict[str, coordinator_pb2.MemberHealth]:
    (chain,) = status.chains
    return {h.id: h for h in chain.health}


async def test_health_follows_the_lease_record_and_a_removed_node_is_forgotten(cluster):
    leader = await cluster.ready_leader()
    service = leader.service
    for node, port in (("n1", 9001), ("n2", 9002)):
        await service.register(coordinator_pb2.RegisterRequest(chain="main", node_id=node,
                                                               address=f"127.0.0.1:{port}"))
        await service.heartbeat(coordinator_pb2.HeartbeatRequest(chain="main", node_id=node, reads=7))
    status = await service.cluster_status()
    assert {h.id: (h.healthy, h.reads) for h in health_of(status).values()} == {"n1": (True, 7), "n2": (True, 7)}

    # The record the failure detector keeps is the one health reports: forget n1's lease there.
    service.leases.last_heard.pop(("main", "n1"))
    assert not health_of(await service.cluster_status())["n1"].healthy

    removed = await leader.member.propose(remove_node("main", "n2"), 5)
    assert removed.ok
    await asyncio.sleep(4 * timing.TICK)  # a few rounds of the leader's failure detector
    assert ("main", "n2") not in service.health
    assert ("main", "n1") in service.health


async def test_a_proxy_reports_a_node_it_cannot_use_through_any_member_and_status_shows_the_reports(cluster):
    leader = await cluster.ready_leader()
    service = leader.service
    for node, port in (("n1", 9001), ("n2", 9002)):
        await service.register(coordinator_pb2.RegisterRequest(chain="main", node_id=node,
                                                               address=f"127.0.0.1:{port}"))
    epoch = (await service.get_chain(coordinator_pb2.GetChainRequest(chain="main"))).config.epoch
    report = coordinator_pb2.LinkHealth(epoch=epoch, successor="n2", successor_unreachable=True)
    await service.heartbeat(coordinator_pb2.HeartbeatRequest(chain="main", node_id="n1", epoch=epoch, seq=1,
                                                             link_health=report))
    assert health_of(await service.cluster_status())["n1"].link_health == report

    # Through a follower, as a proxy would call any member: forwarded to the leader and weighed there.
    follower = cluster.follower(leader).service
    request = coordinator_pb2.ReportUnreachableRequest(chain="main", reporter="proxy-0", node_id="n1", epoch=epoch,
                                                       unreachable_ms=int(timing.LINK_TIMEOUT * 1000) + 100)
    assert (await follower.report_unreachable(request)).accepted
    stale = coordinator_pb2.ReportUnreachableRequest(chain="main", reporter="proxy-0", node_id="n1",
                                                     epoch=epoch - 1, unreachable_ms=900)
    reply = await follower.report_unreachable(stale)
    assert reply.error.code == coordinator_pb2.OK and not reply.accepted
    unknown = await service.report_unreachable(coordinator_pb2.ReportUnreachableRequest(
        chain="main", reporter="proxy-0", node_id="nobody", epoch=epoch, unreachable_ms=900))
    assert unknown.error.code == coordinator_pb2.NOT_FOUND
    anonymous = await service.report_unreachable(coordinator_pb2.ReportUnreachableRequest(chain="main",
                                                                                           node_id="n1"))
    assert anonymous.error.code == coordinator_pb2.INVALID_ARGUMENT
    assert service.supervisor.suspicion.proxies[("main", "proxy-0", "n1")][0] == epoch
    scraped = generate_latest(leader.metrics).decode()
    for metric in ("keychain_coordinator_readmission_holds", "keychain_coordinator_gray_removals_total",
                   "keychain_coordinator_readmission_holds_imposed_total"):
        assert f'{metric}{{member="{leader.options.id}"}} 0.0' in scraped, metric
