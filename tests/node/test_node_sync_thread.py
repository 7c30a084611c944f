"""The node's sync thread: calls run in order on one thread of their own, and their outcome (a
return or an exception) completes a future on the event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest
from keychain.node.sync_thread import SyncThread


def test_calls_run_in_order_on_one_thread_and_errors_reach_the_awaiting_task():
    async def scenario() -> None:
        thread = SyncThread("test-sync")
        ran: list[tuple[int, int]] = []
        loop_thread = threading.get_ident()

        def call(n: int):
            return lambda: ran.append((n, threading.get_ident()))

        await asyncio.gather(*(thread.run(call(n)) for n in range(5)))
        assert [n for n, _ in ran] == [0, 1, 2, 3, 4]
        assert len({t for _, t in ran}) == 1 and ran[0][1] != loop_thread

        def failing() -> None:
            raise OSError("fsync failed")

        with pytest.raises(OSError, match="fsync failed"):
            await thread.run(failing)
        await thread.run(call(5))  # the thread survives a failing call
        assert ran[-1][0] == 5
        thread.close()

    asyncio.run(scenario())
