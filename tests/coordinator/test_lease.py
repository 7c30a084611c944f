"""The failure detector: silent nodes are removed only once their lease has certainly expired."""

from keychain.coordinator import registry
from keychain.coordinator.lease import LeaseTracker, Removal
from keychain.coordinator.registry import Registry

LEASE, MARGIN = 1000, 200


def three_node_chain() -> Registry:
    reg = Registry()
    for cmd in (
        registry.create_chain("c"),
        registry.register_node("c", "a", "h:1"),
        registry.register_node("c", "b", "h:2"),
        registry.register_node("c", "t", "h:3"),
        registry.promote_node("c", "b"),
        registry.promote_node("c", "t"),
    ):
        assert reg.apply(cmd).ok
    return reg


def test_a_node_silent_past_lease_and_margin_is_removed_and_not_before():
    reg = three_node_chain()
    tracker = LeaseTracker(LEASE, MARGIN)
    tracker.become_leader(now=0)
    for node in "abt":
        tracker.observe("c", node, now=1000)
    tracker.observe("c", "a", now=2000)
    tracker.observe("c", "t", now=2000)
    assert tracker.expired(2200, reg.chains.values()) == []  # b: silent exactly lease + margin
    (removal,) = tracker.expired(2201, reg.chains.values())
    assert removal == Removal("c", "b", reg.chains["c"].epoch)
    outcome = reg.apply(removal.command())
    assert outcome.ok and [m.id for m in outcome.chain.members] == ["a", "t"]


def test_a_new_leader_waits_a_full_lease_before_removing_anyone():
    reg = three_node_chain()
    tracker = LeaseTracker(LEASE, MARGIN)
    tracker.become_leader(now=5000)  # it never heard from anyone: they may have heartbeated its predecessor
    assert tracker.expired(6200, reg.chains.values()) == []
    tracker.observe("c", "a", now=6000)
    tracker.observe("c", "t", now=6000)
    assert [r.node for r in tracker.expired(6201, reg.chains.values())] == ["b"]


def test_a_follower_proposes_nothing():
    reg = three_node_chain()
    tracker = LeaseTracker(LEASE, MARGIN)
    tracker.become_leader(now=0)
    tracker.step_down()
    assert tracker.expired(10_000, reg.chains.values()) == []


def test_when_every_active_member_is_silent_the_most_recently_heard_stays():
    reg = three_node_chain()
    tracker = LeaseTracker(LEASE, MARGIN)
    tracker.become_leader(now=0)
    tracker.observe("c", "a", now=100)
    tracker.observe("c", "b", now=300)
    tracker.observe("c", "t", now=200)
    removed = []
    now = 5000
    for _ in range(5):
        for removal in tracker.expired(now, reg.chains.values()):
            assert reg.apply(removal.command()).ok
            removed.append(removal.node)
        now += LEASE
    assert removed == ["a", "t"]
    assert [m.id for m in reg.chains["c"].members] == ["b"]


def test_one_removal_per_chain_at_a_time_and_no_duplicate_proposals():
    reg = three_node_chain()
    tracker = LeaseTracker(LEASE, MARGIN)
    tracker.become_leader(now=0)
    tracker.observe("c", "t", now=3000)
    first = tracker.expired(3000, reg.chains.values())
    assert [r.node for r in first] == ["a"]
    assert tracker.expired(3100, reg.chains.values()) == []  # a's removal has not committed yet
    assert reg.apply(first[0].command()).ok
    assert [r.node for r in tracker.expired(3200, reg.chains.values())] == ["b"]


def test_a_removal_decided_before_the_chain_changed_is_refused():
    reg = three_node_chain()
    tracker = LeaseTracker(LEASE, MARGIN)
    tracker.become_leader(now=0)
    tracker.observe("c", "a", now=3000)
    tracker.observe("c", "t", now=3000)
    (stale,) = tracker.expired(3000, reg.chains.values())
    assert reg.apply(registry.register_node("c", "n", "h:9")).ok  # the chain moves on
    outcome = reg.apply(stale.command())
    assert outcome.error is not None and outcome.error.code is registry.ErrorCode.FAILED_PRECONDITION
    assert reg.chains["c"].member("b") is not None


def test_a_heartbeat_after_a_proposal_withdraws_the_node_from_removal():
    reg = three_node_chain()
    tracker = LeaseTracker(LEASE, MARGIN)
    tracker.become_leader(now=0)
    for node in "at":
        tracker.observe("c", node, now=3000)
    assert [r.node for r in tracker.expired(3000, reg.chains.values())] == ["b"]
    tracker.observe("c", "b", now=3050)
    assert tracker.expired(3100, reg.chains.values()) == []


def test_registry_configs_convert_to_the_wire_shape():
    reg = three_node_chain()
    assert reg.apply(registry.register_node("c", "s", "h:4")).ok
    config = reg.chains["c"].to_proto()
    assert config.chain == "c" and config.epoch == reg.chains["c"].epoch
    assert [(m.id, m.address, m.state) for m in config.members] == [
        ("a", "h:1", 0),
        ("b", "h:2", 0),
        ("t", "h:3", 0),
        ("s", "h:4", 1),
    ]
