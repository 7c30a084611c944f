"""Gray failures at the coordinator leader: every node heartbeats, but a link is dead or a node makes
no progress. The supervision core decides from the nodes' link reports (and proxies' reports) which
member to remove, revokes its lease, removes it once it surrendered the lease, and holds back its
re-admission. Scenarios over the pure core, time passed in."""

from __future__ import annotations

from dataclasses import dataclass, field

from keychain.coordinator import registry
from keychain.coordinator.registry import Registry
from keychain.coordinator.supervision import Grant, Heartbeat, Refusal, Registration, Supervisor
from keychain.coordinator.suspicion import ProxyReport
from keychain.node.link_health import LinkReport

LEASE, REMOVAL_AFTER, GRACE, EVIDENCE, TICK = 1.0, 1.5, 2.0, 0.3, 0.1
START = 10.0  # past a new leader's grace (GRACE + REMOVAL_AFTER after its election at 0)


@dataclass
class Node:
    """A node as its coordinator link behaves: heartbeats numbered in order, and a lease revoked
    (answered OK with lease 0) is surrendered in the next heartbeat."""

    id: str
    seq: int = 0
    surrendered_below: int = 0
    committed_seq: int = 0
    surrenders: bool = True  # False: an older node, which ignores a revocation
    leases: list[float] = field(default_factory=list)


class Cluster:
    def __init__(self, *active: str, syncing: tuple[str, ...] = ()) -> None:
        self.s = Supervisor(lease=LEASE, removal_after=REMOVAL_AFTER, new_leader_grace=GRACE,
                            leader_evidence=EVIDENCE, proposal_timeout=1.0, link_timeout=0.5)
        self.s.become_leader(0.0)
        self.reg = Registry()
        assert self.reg.apply(registry.create_chain("c")).ok
        for i, node in enumerate((*active, *syncing)):
            assert self.reg.apply(registry.register_node("c", node, f"h:{i + 1}")).ok
            if 0 < i < len(active):
                assert self.reg.apply(registry.promote_node("c", node)).ok
        self.nodes = {n: Node(n) for n in (*active, *syncing)}
        self.now = START
        self.removed: list[tuple[str, float]] = []  # (node, when its removal was proposed)

    @property
    def state(self) -> registry.ChainState:
        return self.reg.chains["c"]

    def report(self, node: str, **conditions: bool | int) -> LinkReport:
        """`node`'s report naming its neighbours in the current configuration."""
        ids = [m.id for m in self.state.members]
        i = ids.index(node)
        return LinkReport(epoch=self.state.epoch, successor=ids[i + 1] if i + 1 < len(ids) else "",
                          predecessor=ids[i - 1] if i > 0 else "", **conditions)  # type: ignore[arg-type]

    def beat(self, node: str, links: LinkReport | None = None, in_sync: bool = True) -> Grant | Refusal:
        """A heartbeat from `node` (with `links`, if it reports link health)."""
        n = self.nodes[node]
        n.seq += 1
        decision = self.s.heartbeat(
            Heartbeat("c", node, self.state.epoch, in_sync=in_sync, links=links,
                      committed_seq=n.committed_seq, seq=n.seq, surrendered_below=n.surrendered_below),
            self.state, self.now, confirmed_at=self.now)
        assert not hasattr(decision, "commands"), decision
        if isinstance(decision, Grant):
            n.leases.append(decision.lease)
            if decision.lease == 0 and n.surrenders:
                n.surrendered_below = n.seq + 1
        return decision

    def round(self, reports: dict[str, dict[str, bool | int]] | None = None, *, in_sync: bool = True,
              reporting: tuple[str, ...] | None = None, beating: tuple[str, ...] | None = None) -> None:
        """One heartbeat interval: each member (of `beating`) heartbeats, with its report if it is
        `reporting`, then the failure detector runs and its removals apply."""
        reports = reports or {}
        for m in self.state.members:
            if beating is not None and m.id not in beating:
                continue
            links = self.report(m.id, **reports.get(m.id, {})) if reporting is None or m.id in reporting else None
            self.beat(m.id, links, in_sync=in_sync)
        for removal in self.s.removals(self.now, [self.state]):
            self.removed.append((removal.node, self.now))
            assert self.reg.apply(removal.command()).ok
        self.now += TICK

    def run(self, seconds: float, reports: dict[str, dict[str, bool | int]] | None = None, **kw: object) -> None:
        """Rounds for `seconds`; the faults `reports` describe last until the configuration changes
        (a node's link-health timers start over with a new epoch)."""
        end, epoch = self.now + seconds, self.state.epoch
        while self.now < end - 1e-9:
            self.round(reports if self.state.epoch == epoch else None, **kw)  # type: ignore[arg-type]

    def members(self) -> list[str]:
        return [m.id for m in self.state.members]


# ---- one-way partitions: whom the dead links point at ----


def test_a_middle_cut_off_from_its_predecessor_is_removed_at_once_after_surrendering_its_lease():
    c = Cluster("h", "m", "t")
    c.run(0.5)
    c.run(1.0, {"h": {"successor_unreachable": True}, "m": {"predecessor_silent": True}})
    assert c.members() == ["h", "t"]
    (removed, at), = c.removed
    assert removed == "m"
    # Settled (two rounds), revoked, surrendered, removed: far sooner than its last lease would lapse.
    assert at <= START + 0.5 + 5 * TICK + 1e-9 < START + 0.4 + REMOVAL_AFTER
    assert c.nodes["m"].leases[-1] == 0.0


def test_a_tail_its_predecessor_cannot_reach_is_removed():
    c = Cluster("h", "m", "t")
    c.run(1.0, {"m": {"successor_unreachable": True}, "t": {"predecessor_silent": True}})
    assert c.members() == ["h", "m"]


def test_a_middle_dead_on_both_links_is_the_culprit_not_its_neighbours():
    c = Cluster("h", "m", "t")
    c.run(1.0, {"h": {"successor_not_acking": True, "successor_acked": 3},
                "m": {"predecessor_silent": True, "successor_unreachable": True},
                "t": {"predecessor_silent": True}})
    assert c.members() == ["h", "t"]


def test_a_middle_cut_off_on_both_links_goes_though_the_claims_about_one_link_arrive_first():
    c = Cluster("h", "m", "t")
    c.round({"m": {"successor_unreachable": True}, "t": {"predecessor_silent": True}})
    c.run(1.0, {"h": {"successor_unreachable": True}, "m": {"predecessor_silent": True, "successor_unreachable": True},
                "t": {"predecessor_silent": True}})
    assert c.members() == ["h", "t"] and [n for n, _ in c.removed] == ["m"]


def test_a_tail_cut_off_costs_only_the_tail_though_acks_stop_all_the_way_up():
    c = Cluster("h", "m", "t")
    c.nodes["m"].committed_seq = 3
    c.run(1.0, {"h": {"successor_not_acking": True, "successor_acked": 3}, "m": {"successor_unreachable": True},
                "t": {"predecessor_silent": True}})
    assert c.members() == ["h", "m"] and [n for n, _ in c.removed] == ["t"]


def test_a_tail_cut_off_costs_only_the_tail_whatever_order_the_claims_arrive_in():
    c = Cluster("h", "m", "t")
    c.nodes["m"].committed_seq = 3
    # t's and h's claims come a round before m's own report, which explains h's "not acking".
    c.round({"h": {"successor_not_acking": True, "successor_acked": 3}, "t": {"predecessor_silent": True}})
    c.run(1.0, {"h": {"successor_not_acking": True, "successor_acked": 3}, "m": {"successor_unreachable": True},
                "t": {"predecessor_silent": True}})
    assert c.members() == ["h", "m"] and [n for n, _ in c.removed] == ["t"]


def test_a_head_whose_outgoing_traffic_is_dropped_loses_its_successor_then_goes_itself():
    c = Cluster("h", "m", "t")
    # Only h -> m shows at first: the later end goes (h holds everything m holds).
    c.run(0.6, {"h": {"successor_unreachable": True}, "m": {"predecessor_silent": True}})
    assert c.members() == ["h", "t"]
    # Then h -> t is dead too: h is implicated with two peers, and goes.
    c.run(1.0, {"h": {"successor_unreachable": True}, "t": {"predecessor_silent": True}})
    assert c.members() == ["t"]
    assert [n for n, _ in c.removed] == ["m", "h"]


def test_a_head_that_hears_nothing_goes_in_one_step_not_its_innocent_successor():
    # Nothing reaches h: no Welcome from m, and no answer from the coordinators either, though its
    # heartbeats arrive. The dead link h -> m is h's fault, so h goes and m stays.
    c = Cluster("h", "m", "t")
    c.run(0.6, {"h": {"successor_unreachable": True, "coordinator_unheard": True}, "m": {"predecessor_silent": True}})
    assert c.members() == ["m", "t"] and [n for n, _ in c.removed] == ["h"]


def test_a_proxy_that_cannot_use_the_head_is_set_aside_while_a_link_below_it_is_dead():
    # The tail is cut off: writes wait at the head for acks, so the head looks silent to the
    # proxies. Only the tail goes; the head's silence began before the new epoch and is not held
    # against it afterwards.
    c = Cluster("h", "m", "t")
    for p in ("p1", "p2"):
        c.s.report_unreachable(ProxyReport("c", p, "h", c.state.epoch, 0.8), c.state, c.now)
    c.run(0.6, {"m": {"successor_unreachable": True}, "t": {"predecessor_silent": True}})
    for p in ("p1", "p2"):
        c.s.report_unreachable(ProxyReport("c", p, "h", c.state.epoch, 1.5), c.state, c.now)
    c.run(0.6)
    assert c.members() == ["h", "m"] and [n for n, _ in c.removed] == ["t"]


def test_a_head_only_a_proxy_cannot_use_is_removed_but_a_proxy_that_can_use_nobody_is_ignored():
    c = Cluster("h", "m", "t")
    for node in ("h", "m"):  # cut off itself: it reports two members
        assert c.s.report_unreachable(ProxyReport("c", "p2", node, c.state.epoch, 0.8), c.state, c.now) is True
    c.run(0.6)
    assert c.members() == ["h", "m", "t"]
    # Too short, and of an older epoch: neither counts.
    assert c.s.report_unreachable(ProxyReport("c", "p1", "h", c.state.epoch, 0.1), c.state, c.now) is False
    assert c.s.report_unreachable(ProxyReport("c", "p1", "h", c.state.epoch - 1, 0.9), c.state, c.now) is False
    c.run(0.6)
    assert c.members() == ["h", "m", "t"]
    assert c.s.report_unreachable(ProxyReport("c", "p1", "h", c.state.epoch, 0.9), c.state, c.now) is True
    c.run(0.6)
    assert c.members() == ["m", "t"]
    unknown = c.s.report_unreachable(ProxyReport("c", "p1", "zz", c.state.epoch, 0.9), c.state, c.now)
    assert isinstance(unknown, Refusal) and unknown.code == "NOT_FOUND"


# ---- no progress ----


def test_a_stalled_middle_is_removed():
    c = Cluster("h", "m", "t")
    c.nodes["m"].committed_seq = 4
    c.run(1.0, {"h": {"successor_not_acking": True, "successor_acked": 4}, "m": {"stalled": True}})
    assert c.members() == ["h", "t"]


# ---- disagreeing, stale and lying reports ----


def test_one_report_against_another_is_not_acted_on_until_a_second_one_agrees():
    c = Cluster("h", "m", "t")
    c.nodes["m"].committed_seq = 5
    # h says m does not ack past 5; m says h's link works and it has committed nothing more.
    c.run(1.5, {"h": {"successor_not_acking": True, "successor_acked": 5}})
    assert c.members() == ["h", "m", "t"] and c.removed == []
    # m's own figures then agree with h: it committed past what h saw acked (its acks are lost).
    c.nodes["m"].committed_seq = 9
    c.run(0.6, {"h": {"successor_not_acking": True, "successor_acked": 5}})
    assert c.members() == ["h", "t"]


def test_a_disputed_claim_counts_once_a_third_party_backs_it():
    c = Cluster("h", "m", "t")
    c.run(1.0, {"m": {"predecessor_silent": True}})  # h says its link to m is fine
    assert c.removed == []
    c.s.report_unreachable(ProxyReport("c", "p1", "h", c.state.epoch, 0.9), c.state, c.now)
    c.run(0.6, {"m": {"predecessor_silent": True}})
    assert c.members() == ["m", "t"]


def test_a_proxy_that_cannot_use_a_member_other_than_the_head_claims_nothing():
    """Reads left waiting on a middle or tail are retried elsewhere, and a member just promoted keeps
    reads waiting until it is level: only a head that takes no writes is a proxy's business."""
    c = Cluster("h", "m", "t")
    c.run(1.0, {"m": {"successor_not_acking": True}})  # t says its link from m is fine
    c.s.report_unreachable(ProxyReport("c", "p1", "t", c.state.epoch, 0.9), c.state, c.now)
    c.run(0.6, {"m": {"successor_not_acking": True}})
    assert c.removed == [] and c.members() == ["h", "m", "t"]


def test_a_lying_reporter_whose_neighbours_say_their_links_work_removes_nobody():
    c = Cluster("h", "m", "t")
    c.run(2.0, {"m": {"predecessor_silent": True, "successor_unreachable": True}})
    assert c.removed == [] and c.members() == ["h", "m", "t"]


def test_a_node_that_reports_everyone_unreachable_is_itself_removed():
    c = Cluster("h", "m", "t")
    # Its neighbours have no fresh report to dispute it: the accuser of two peers is the culprit.
    c.run(1.0, {"m": {"predecessor_silent": True, "successor_unreachable": True}}, reporting=("m",))
    assert "m" not in c.members()
    assert [n for n, _ in c.removed] == ["m"]


def test_stale_reports_count_for_nothing():
    c = Cluster("h", "m", "t")
    old = LinkReport(epoch=c.state.epoch - 1, successor="m", successor_unreachable=True)
    for _ in range(10):  # a report about an older configuration
        c.beat("h", old)
        c.beat("m", c.report("m"))
        c.beat("t", c.report("t"))
        assert c.s.removals(c.now, [c.state]) == []
        c.now += TICK
    # Reports that stopped coming stop counting after the report TTL (the lease deals with silence).
    c.beat("h", c.report("h", successor_unreachable=True))
    c.beat("m", c.report("m", predecessor_silent=True))
    c.now += 0.5
    for node in ("h", "m", "t"):
        c.beat(node)
    assert c.s.removals(c.now, [c.state]) == []
    assert not c.s.suspected("c", "m")


# ---- the writes every removal must keep ----


def test_the_last_member_holding_every_acknowledged_write_is_kept():
    c = Cluster("a", "b")
    # Only b has reported being in sync in this epoch: a dead link a -> b removes a, never b.
    c.run(1.0, {"a": {"successor_unreachable": True}, "b": {"predecessor_silent": True}}, in_sync=False)
    for _ in range(10):
        c.beat("b", c.report("b", predecessor_silent=True), in_sync=True)
        if "a" in c.members():
            c.beat("a", c.report("a", successor_unreachable=True), in_sync=False)
        for removal in c.s.removals(c.now, [c.state]):
            assert removal.node != "b"
            c.removed.append((removal.node, c.now))
            assert c.reg.apply(removal.command()).ok
        c.now += TICK
    assert c.members() == ["b"]


def test_a_lone_active_member_is_never_removed_even_stalled_only_its_joiner_goes():
    c = Cluster("a", syncing=("j",))
    c.run(2.0, {"a": {"successor_unreachable": True, "stalled": True}, "j": {"predecessor_silent": True}})
    assert c.members() == ["a"]


# ---- the lease surrender ----


def test_without_a_surrender_the_removal_waits_for_the_lease_to_lapse():
    c = Cluster("h", "m", "t")
    c.run(0.3)
    last_grant = c.now - TICK
    c.nodes["m"].surrenders = False  # an older node: it is removed once its last lease certainly expired
    c.run(2.5, {"h": {"successor_unreachable": True}, "m": {"predecessor_silent": True}})
    (node, at), = c.removed
    assert node == "m" and at - last_grant > REMOVAL_AFTER


def test_a_surrender_older_than_the_revocation_does_not_count():
    c = Cluster("h", "m", "t")
    c.run(0.3)
    fence = c.nodes["m"].seq
    c.nodes["m"].surrenders = False
    c.run(0.6, {"h": {"successor_unreachable": True}, "m": {"predecessor_silent": True}})
    assert c.s.suspected("c", "m")
    # A heartbeat from before the revocation claims a surrender that does not cover every grant.
    late = c.s.heartbeat(Heartbeat("c", "m", c.state.epoch, seq=fence, surrendered_below=fence),
                         c.state, c.now, c.now)
    assert isinstance(late, Grant) and late.lease == 0.0
    assert c.s.removals(c.now, [c.state]) == [] and c.members() == ["h", "m", "t"]


# ---- re-admission ----


def test_a_node_removed_for_its_links_rejoins_after_a_backoff_that_grows_each_time():
    c = Cluster("h", "m", "t")
    holds = []
    for _ in range(2):
        pred = c.members()[c.members().index("m") - 1]
        c.run(1.0, {pred: {"successor_unreachable": True}, "m": {"predecessor_silent": True}})
        assert "m" not in c.members()
        c.run(0.1)  # the detector notes the removal
        (hold,) = c.s.held("c", c.now)
        holds.append(hold.until - c.removed[-1][1] - TICK)
        refused = c.s.register(Registration("c", "m", "h:2"), c.state, c.now, c.now)
        assert isinstance(refused, Refusal) and refused.code == "FAILED_PRECONDITION"
        c.now += hold.remaining(c.now) + 0.01
        proposal = c.s.register(Registration("c", "m", "h:2"), c.state, c.now, c.now)
        assert c.reg.apply(proposal.commands[0]).ok and c.members() == ["h", "t", "m"]  # joins as syncing
        assert c.reg.apply(registry.promote_node("c", "m")).ok
        # The same fault again: m is now the tail behind t.
        c.run(0.3)
    assert [round(h, 6) for h in holds] == [1.0, 2.0]
    assert c.s.readmission.imposed == 2 and c.s.gray_removals == 2


def test_a_drained_node_is_not_readmitted_while_its_process_stops():
    c = Cluster("h", "m", "t")
    c.run(0.3)
    assert c.s.drain("c", "t", c.state) is None
    c.run(0.5)  # t surrenders its lease and is removed at once
    assert c.members() == ["h", "m"]
    c.run(0.1)
    refused = c.s.register(Registration("c", "t", "h:3"), c.state, c.now, c.now)
    assert isinstance(refused, Refusal) and "drained" in refused.message
    (hold,) = c.s.held("c", c.now)
    assert hold.removals == 0 and hold.remaining(c.now) > 5.0


def test_a_new_leader_revokes_nobody_during_its_grace():
    c = Cluster("h", "m", "t")
    c.s.become_leader(c.now)
    c.run(GRACE + REMOVAL_AFTER - 0.1, {"h": {"successor_unreachable": True}, "m": {"predecessor_silent": True}})
    assert c.removed == [] and not c.s.suspected("c", "m")
    c.run(1.0, {"h": {"successor_unreachable": True}, "m": {"predecessor_silent": True}})
    assert c.members() == ["h", "t"]


def test_a_crashed_head_is_left_to_the_lease_and_costs_its_live_successor_nothing():
    c = Cluster("h", "m", "t")
    c.run(0.3)
    # h stops heartbeating (crashed); m reports it silent: only h goes, once its lease lapsed.
    c.run(2.0, {"m": {"predecessor_silent": True}}, reporting=("m", "t"), beating=("m", "t"))
    assert c.members() == ["m", "t"] and [n for n, _ in c.removed] == ["h"]


def test_a_surrender_must_also_cover_a_registration_granted_after_the_last_numbered_heartbeat():
    c = Cluster("h", "m", "t")
    c.run(0.3)
    c.s.drain("c", "m", c.state)
    c.run(0.5)
    assert "m" not in c.members()
    # m registers again (after its hold); a heartbeat it sent long before arrives late, still
    # claiming the surrender of back then, after the leader decided to remove m again.
    c.now += 20.0
    c.run(0.1)
    stale_below = c.nodes["m"].surrendered_below
    proposal = c.s.register(Registration("c", "m", "h:2"), c.state, c.now, c.now)
    outcome = c.reg.apply(proposal.commands[0])
    assert c.s.registered(Registration("c", "m", "h:2"), outcome, c.now).lease == LEASE
    assert c.s.drain("c", "m", c.state) is None
    late = Heartbeat("c", "m", c.state.epoch, seq=stale_below, surrendered_below=stale_below)
    c.s.heartbeat(late, c.state, c.now, c.now)
    assert c.s.removals(c.now, [c.state]) == []  # the registration's lease may still run


def test_no_node_joins_while_a_member_is_being_removed_for_a_gray_failure():
    c = Cluster("h", "m", "t")
    c.nodes["m"].surrenders = False  # its removal waits for its lease: a joiner would call it off
    c.run(0.9, {"h": {"successor_unreachable": True}, "m": {"predecessor_silent": True}})
    assert c.s.suspected("c", "m")
    refused = c.s.register(Registration("c", "j", "h:9"), c.state, c.now, c.now)
    assert isinstance(refused, Refusal) and "removing" in refused.message
    c.run(1.5, {"h": {"successor_unreachable": True}, "m": {"predecessor_silent": True}})
    assert c.members() == ["h", "t"]
    assert c.s.register(Registration("c", "j", "h:9"), c.state, c.now, c.now).commands
