"""The failure detector: silent nodes are removed only once their lease has certainly expired, and a
node whose removal is in flight gets no lease."""

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


def epoch(reg: Registry) -> int:
    return reg.chains["c"].epoch


def heard(tracker: LeaseTracker, reg: Registry, now: float, *nodes: str) -> None:
    """Heartbeats from `nodes` at `now`, the chain at its current epoch."""
    for node in nodes:
        tracker.observe("c", node, now=now, epoch=epoch(reg))


def test_a_node_silent_past_lease_and_margin_is_removed_and_not_before():
    reg = three_node_chain()
    tracker = LeaseTracker(LEASE, MARGIN)
    tracker.become_leader(now=0)
    heard(tracker, reg, 1000, "a", "b", "t")
    heard(tracker, reg, 2000, "a", "t")
    assert tracker.expired(2200, reg.chains.values()) == []  # b: silent exactly lease + margin
    (removal,) = tracker.expired(2201, reg.chains.values())
    assert removal == Removal("c", "b", epoch(reg))
    outcome = reg.apply(removal.command())
    assert outcome.ok and [m.id for m in outcome.chain.members] == ["a", "t"]


def test_a_new_leader_waits_a_full_lease_before_removing_anyone():
    reg = three_node_chain()
    tracker = LeaseTracker(LEASE, MARGIN)
    tracker.become_leader(now=5000)  # it never heard from anyone: they may have heartbeated its predecessor
    assert tracker.expired(6200, reg.chains.values()) == []
    heard(tracker, reg, 6000, "a", "t")
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
    heard(tracker, reg, 100, "a")
    heard(tracker, reg, 300, "b")
    heard(tracker, reg, 200, "t")
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
    heard(tracker, reg, 3000, "t")
    first = tracker.expired(3000, reg.chains.values())
    assert [r.node for r in first] == ["a"]
    assert tracker.expired(3100, reg.chains.values()) == []  # a's removal has not committed yet
    assert reg.apply(first[0].command()).ok
    assert [r.node for r in tracker.expired(3200, reg.chains.values())] == ["b"]


def test_a_removal_decided_before_the_chain_changed_is_refused():
    reg = three_node_chain()
    tracker = LeaseTracker(LEASE, MARGIN)
    tracker.become_leader(now=0)
    heard(tracker, reg, 3000, "a", "t")
    (stale,) = tracker.expired(3000, reg.chains.values())
    assert reg.apply(registry.register_node("c", "n", "h:9")).ok  # the chain moves on
    outcome = reg.apply(stale.command())
    assert outcome.error is not None and outcome.error.code is registry.ErrorCode.FAILED_PRECONDITION
    assert reg.chains["c"].member("b") is not None


# ---- a removal in flight ----


def test_a_node_whose_removal_is_in_flight_gets_no_lease_until_the_entry_applies():
    reg = three_node_chain()
    tracker = LeaseTracker(LEASE, MARGIN)
    tracker.become_leader(now=0)
    heard(tracker, reg, 3000, "a", "t")
    (removal,) = tracker.expired(3000, reg.chains.values())
    assert removal.node == "b"
    # b heartbeats again before the entry committed: it may still commit, so no lease.
    assert not tracker.observe("c", "b", now=3050, epoch=epoch(reg))
    assert tracker.in_flight("c", "b") and not tracker.lease_valid("c", "b", 3050)
    assert reg.apply(removal.command()).ok  # it committed; b's heartbeats are now NOT_FOUND
    heard(tracker, reg, 3100, "a", "t")
    assert tracker.expired(3100, reg.chains.values()) == []
    assert not tracker.in_flight("c", "b")


def test_a_removal_refused_because_the_chain_moved_on_lets_the_node_be_renewed():
    reg = three_node_chain()
    tracker = LeaseTracker(LEASE, MARGIN)
    tracker.become_leader(now=0)
    heard(tracker, reg, 3000, "a", "t")
    (removal,) = tracker.expired(3000, reg.chains.values())
    assert not tracker.observe("c", "b", now=3050, epoch=epoch(reg))
    assert reg.apply(registry.register_node("c", "n", "h:9")).ok  # applied before the removal entry
    assert reg.apply(removal.command()).error is not None
    assert tracker.observe("c", "b", now=3100, epoch=epoch(reg))
    assert tracker.lease_valid("c", "b", 3100)


def test_a_removal_that_never_entered_the_log_is_withdrawn():
    reg = three_node_chain()
    tracker = LeaseTracker(LEASE, MARGIN)
    tracker.become_leader(now=0)
    heard(tracker, reg, 3000, "a", "t")
    (removal,) = tracker.expired(3000, reg.chains.values())
    tracker.withdraw(removal)  # e.g. the proposal was dropped during a leadership transfer
    assert tracker.observe("c", "b", now=3050, epoch=epoch(reg))
    heard(tracker, reg, 3050, "a", "t")
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
