"""The one outbox mechanism behind both write and read batching, driven with a scripted sender."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from keychain.proxy.batching import BatchQueue
from keychain.proxy.outbox import Outboxes


@dataclass
class Item:
    name: str
    done: asyncio.Future[object] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    answer: str | None = None


class Node:
    """A sender whose batches return only when the test releases them."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[str]]] = []
        self.release = asyncio.Event()
        self.returned: list[str] = []

    async def send(self, address: str, batch: list[Item]) -> None:
        self.batches.append((address, [i.name for i in batch]))
        await self.release.wait()
        for item in batch[:-1]:  # the last item of each batch is left unanswered
            item.answer = f"ok from {address}"
            item.done.set_result(None)

    async def on_returned(self, address: str) -> None:
        self.returned.append(address)


def outboxes(node: Node) -> Outboxes[Item]:
    return Outboxes(lambda: BatchQueue(max_ops=10, max_pending=2), node.send, node.on_returned)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_items_waiting_behind_a_batch_leave_together_when_it_returns():
    node = Node()
    boxes = outboxes(node)
    first, second, third = Item("w1"), Item("w2"), Item("w3")
    assert boxes.submit("a", first, 10)
    assert boxes.submit("a", second, 10) and boxes.submit("a", third, 10)
    await settle()
    assert node.batches == [("a", ["w1"])], "an idle outbox sends at once; the rest wait for it"
    assert not boxes.submit("a", Item("w4"), 10), "the waiting queue is bounded"
    node.release.set()
    await settle()
    assert node.batches == [("a", ["w1"]), ("a", ["w2", "w3"])]
    assert first.done.done() and first.answer is None, "what the sender left unanswered is settled"
    assert second.answer == "ok from a" and third.done.done() and third.answer is None
    assert node.returned == ["a", "a"]


async def test_an_item_whose_caller_gave_up_before_it_left_is_not_sent():
    node = Node()
    boxes = outboxes(node)
    assert boxes.submit("a", Item("w1"), 10)
    gave_up = Item("w2")
    assert boxes.submit("a", gave_up, 10) and boxes.submit("a", Item("w3"), 10)
    gave_up.done.set_result("expired")
    node.release.set()
    await settle()
    assert node.batches == [("a", ["w1"]), ("a", ["w3"])]


async def test_a_busy_outbox_of_an_address_to_drop_stays_until_it_drains():
    node = Node()
    boxes = outboxes(node)
    assert boxes.submit("a", Item("w1"), 10) and boxes.submit("b", Item("r1"), 10)
    node.release.set()
    await settle()
    assert boxes.submit("a", Item("w2"), 10)  # in flight again, then pruned while busy
    assert boxes.prune(keep={"b"}) is False and boxes.addresses == {"a", "b"}
    await settle()
    assert boxes.prune(keep={"b"}) is True and boxes.addresses == {"b"}


async def test_closing_cancels_the_batches_in_flight():
    node = Node()
    boxes = outboxes(node)
    item = Item("w1")
    assert boxes.submit("a", item, 10)
    await settle()
    boxes.cancel()
    await settle()
    assert item.done.done() and item.answer is None, "a cancelled batch still settles its items"
