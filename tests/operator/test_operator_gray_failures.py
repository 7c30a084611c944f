"""Gray failures on the Chain: a Warning Event once per member suspected and once per re-admission hold,
and the holds in the status. The status a reconcile writes is what the next one compares with."""

from __future__ import annotations

from dataclasses import replace

from keychain.operator.gray_failures import gray_failure_events, held_status
from keychain.operator.naming import Names
from keychain.operator.status import Observation, build_status
from keychain.operator.stepping import Activity, ChainView, Member, NodeSetState, ReadmissionHold, Step

NAMES = Names("mychain", "ns1")
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:10Z"
LINKS = "its successor does not ack"


def chain(*members: Member, held: tuple[ReadmissionHold, ...] = ()) -> ChainView:
    return ChainView("mychain", 7, members, held)


def member(ordinal: int, role: str, suspected: str = "") -> Member:
    return Member(f"mychain-node-{ordinal}", "", "active", role, True, suspected=suspected)


def status(view: ChainView, previous: dict | None = None, now: str = T0) -> dict:
    node_set = NodeSetState(3, 0, 3, 3, True, True, True)
    seen = Observation(desired_replicas=3, generation=1, node_set=node_set, chain=view, leader="mychain-coord-0",
                       coordinator_error=None, proxies_available=1, step=Step(3, 0, Activity.STEADY))  # fmt: skip
    return build_status(NAMES, seen, previous, now)


def ticks(*views: ChainView) -> list[list[tuple[str, str]]]:
    """The (reason, message) Warnings of each timer tick that saw `views` in turn, each compared with
    the status the previous tick wrote."""
    previous: dict = {}
    seen = []
    for view in views:
        seen.append(
            [(e.reason, e.message) for e in gray_failure_events(previous, view) if e.type == "Warning"]
        )
        previous = status(view, previous)
    return seen


def test_a_member_suspected_of_a_gray_failure_is_one_warning_however_many_ticks_see_it():
    healthy = chain(member(0, "head"), member(1, "middle"), member(2, "tail"))
    suspected = chain(
        member(0, "head"), member(1, "middle", "mychain-node-0 cannot reach it"), member(2, "tail")
    )
    warnings = ticks(healthy, suspected, suspected, suspected)
    assert warnings[0] == [] and warnings[2:] == [[], []]
    assert warnings[1] == [("MemberSuspected", "removing mychain-node-1 from the chain for a gray failure: "
                                               "mychain-node-0 cannot reach it")]  # fmt: skip
    assert status(suspected)["members"][1]["suspected"] == "mychain-node-0 cannot reach it"
    assert "suspected" not in status(suspected)["members"][0]


def test_a_hold_is_one_warning_per_removal_count_naming_the_node_and_how_long():
    members = (member(0, "head"), member(2, "tail"))
    first = chain(*members, held=(ReadmissionHold("mychain-node-1", 1500, 1, LINKS),))
    later = replace(
        first, held=(ReadmissionHold("mychain-node-1", 700, 1, LINKS),)
    )  # the same hold, running down
    second = chain(*members, held=(ReadmissionHold("mychain-node-1", 2000, 2, LINKS),))
    warnings = ticks(chain(*members), first, later, chain(*members), second, second)
    assert [len(w) for w in warnings] == [0, 1, 0, 0, 1, 0]
    assert warnings[1] == [("ReadmissionHeld", "mychain-node-1 may not rejoin the chain for 2 s after 1 removal "
                                               f"for link failures ({LINKS})")]  # fmt: skip
    assert warnings[4] == [("ReadmissionHeld", "mychain-node-1 may not rejoin the chain for 2 s after 2 removals "
                                               f"for link failures ({LINKS})")]  # fmt: skip


def test_a_hold_after_a_drain_on_request_is_shown_but_is_no_warning():
    drained = chain(
        member(0, "head"), held=(ReadmissionHold("mychain-node-1", 3000, 0, "drained on request"),)
    )
    assert ticks(drained) == [[]]
    assert status(drained)["held"] == [{"node": "mychain-node-1", "removals": 0, "reason": "drained on request",
                                        "until": "2026-01-01T00:00:03Z"}]  # fmt: skip


def test_the_status_shows_each_hold_with_a_stable_end_so_a_steady_chain_writes_nothing_new():
    hold = ReadmissionHold("mychain-node-1", 30_000, 3, LINKS)
    first = status(chain(member(0, "head"), held=(hold,)))
    assert first["held"] == [
        {"node": "mychain-node-1", "removals": 3, "reason": LINKS, "until": "2026-01-01T00:00:30Z"}
    ]
    # Ten seconds later the coordinator says 20 s remain: the same hold, the same status.
    again = status(chain(member(0, "head"), held=(replace(hold, remaining_ms=20_000),)), first, T1)
    assert again["held"] == first["held"]
    # A further removal is a new hold with its own end; once lifted, the list is empty (not left over).
    more = status(
        chain(member(0, "head"), held=(ReadmissionHold("mychain-node-1", 60_000, 4, LINKS),)), again, T1
    )
    assert more["held"][0]["until"] == "2026-01-01T00:01:10Z"
    assert status(chain(member(0, "head")), more, T1)["held"] == []


def test_the_holds_are_kept_while_the_coordinator_does_not_answer():
    shown = status(chain(member(0, "head"), held=(ReadmissionHold("mychain-node-1", 1000, 1, LINKS),)))
    node_set = NodeSetState(3, 0, 3, 3, True, True, True)
    unanswered = Observation(desired_replicas=3, generation=1, node_set=node_set, chain=None, leader=None,
                             coordinator_error="no coordinator answered", proxies_available=1,
                             step=Step(3, 0, Activity.STEADY))  # fmt: skip
    assert build_status(NAMES, unanswered, shown, T1)["held"] == shown["held"]


def test_held_status_rounds_the_remaining_time_up_to_the_second():
    assert held_status([ReadmissionHold("n", 1, 1, LINKS)], None, T0)[0]["until"] == "2026-01-01T00:00:01Z"
