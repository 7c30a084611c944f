"""The failure detector: silent nodes are removed only once their lease has certainly expired, never
leaving a chain without a member known to hold every acknowledged write, and a node whose removal
is in flight gets no lease."""

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


def heard(tracker: LeaseTracker, reg: Registry, now: float, *nodes: str, in_sync: bool = True) -> None:
    """Heartbeats from `nodes` at `now`, running the chain's current epoch."""
    for node in nodes:
        tracker.observe("c", node, now=now, epoch=epoch(reg))
        if in_sync:
            tracker.record_in_sync("c", node, epoch(reg))


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
            heard(tracker, reg, 0, "b")  # b, silent since, had reported in sync in each new epoch
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
    heard(tracker, reg, 3150, "t")  # t runs the new epoch, in sync
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


# ---- never leave a chain without an in-sync member ----


def promoted_behind_its_head() -> Registry:
    """Chain [a] with s promoted to tail: s holds the writes a acknowledged alone only once it has
    caught up with a in the new epoch."""
    reg = Registry()
    for cmd in (registry.create_chain("c"), registry.register_node("c", "a", "h:1"),
                registry.register_node("c", "s", "h:2"), registry.promote_node("c", "s")):
        assert reg.apply(cmd).ok
    return reg


def test_the_head_is_not_removed_while_the_new_tail_has_not_reported_in_sync():
    reg = promoted_behind_its_head()
    tracker = LeaseTracker(LEASE, MARGIN)
    tracker.become_leader(now=0)
    tracker.record_in_sync("c", "s", epoch(reg) - 1)  # level with a as a syncing node, in the old epoch
    heard(tracker, reg, 0, "a")  # a reported in sync, then crashed
    for now in range(1000, 6000, 100):
        heard(tracker, reg, now, "s", in_sync=False)  # s is alive but never caught up with a
        assert tracker.expired(now, reg.chains.values()) == [], "a may hold the only copy of acked writes"
    heard(tracker, reg, 6000, "s")  # a came back meanwhile and s caught up, or s reports it now
    assert [r.node for r in tracker.expired(6000, reg.chains.values())] == ["a"]


def test_the_rule_waits_for_evidence_in_the_current_epoch_and_spares_syncing_members():
    reg = three_node_chain()
    tracker = LeaseTracker(LEASE, MARGIN)
    tracker.become_leader(now=0)
    heard(tracker, reg, 1000, "a", "t")
    assert reg.apply(registry.register_node("c", "s", "h:4")).ok  # new epoch: a and t still report the old
    heard(tracker, reg, 2500, "s", in_sync=False)
    tracker.observe("c", "a", now=2500, epoch=epoch(reg))
    tracker.observe("c", "t", now=2500, epoch=epoch(reg))
    assert tracker.expired(2500, reg.chains.values()) == []  # b silent, but nobody is in sync at this epoch
    tracker.record_in_sync("c", "t", epoch(reg))
    (removal,) = tracker.expired(2600, reg.chains.values())
    assert removal.node == "b" and reg.apply(removal.command()).ok
    # A syncing member holds no write that only it has: removed without any evidence.
    heard(tracker, reg, 4000, "a", "t", in_sync=False)
    assert [r.node for r in tracker.expired(4000, reg.chains.values())] == ["s"]


def test_a_node_holding_the_only_copy_is_passed_over_for_another_silent_one():
    reg = three_node_chain()
    tracker = LeaseTracker(LEASE, MARGIN)
    tracker.become_leader(now=0)
    heard(tracker, reg, 1000, "a")  # the head: in sync
    heard(tracker, reg, 3000, "b", in_sync=False)  # restarted, behind a
    # a and t are silent; only a is known in sync, so t goes first and a stays.
    assert [r.node for r in tracker.expired(3000, reg.chains.values())] == ["t"]


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
