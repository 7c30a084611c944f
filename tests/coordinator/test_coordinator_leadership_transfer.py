"""Leadership hand-over picks a voter that can take over: one heard from lately, not a dead one.

Five members in this test's event loop; one follower is stopped, so the leader's CheckQuorum state
marks it inactive while its log is as long as the others' (an idle cluster). A graceful shutdown
of the leader must hand leadership to a live voter, not to the dead one that ties on the log.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from coordinator_shell_harness import InProcessCluster

pytestmark = pytest.mark.timeout(60)


async def test_a_leader_shutting_down_hands_over_to_a_live_voter_not_a_dead_one(tmp_path, caplog):
    cluster = InProcessCluster(tmp_path, size=5)
    await cluster.start_all()
    try:
        leader = await cluster.leader()
        followers = sorted(m for m in cluster.servers if m != leader.options.id)
        dead = followers[-1]  # the highest id: a tie on the log alone would pick it
        await cluster.stop(dead)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while True:
            progress = leader.member.core.status().progress
            live_heard = any(progress[m].recent_active for m in followers[:-1])
            if not progress[dead].recent_active and live_heard:
                break
            assert loop.time() < deadline, "the leader never marked the stopped member inactive"
            await asyncio.sleep(0.01)
        assert len({progress[m].match for m in followers}) == 1  # an idle cluster: every log is as long

        caplog.set_level(logging.INFO, logger="keychain.coordinator.server")
        await cluster.stop(leader.options.id)  # the target is chosen before the first await
        (record,) = [r for r in caplog.records if r.getMessage().startswith("leadership transfer on shutdown")]
        assert f"to={dead} " not in record.getMessage()
        assert record.getMessage().endswith("done=True")
    finally:
        await cluster.stop_all()
