"""Client load for end-to-end tests: recorded operations, a bounded background load, the checks.

- `RecordedClient`: put/get/delete, range, txn and watch through `keychain.client.Client`, each
  recorded in a shared `keychain.testing.history.Recorder` (and `VersionedRecorder` also keeps
  the versions seen).
- `Load`: writer threads, each the only writer of its own keys (unique values), and readers;
  bounded in operations and in time.
- `assert_linearizable` (the history through `keychain.testing.checker`), `lost_writes` (a
  key's final value against its acknowledged writes), `read_back`, `write_gaps`.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from keychain.client import Client, KeychainError, KeyNotFound, OutcomeUnknown, TxnResult
from keychain.testing.checker import check
from keychain.testing.history import Compare, Operation, Recorder, TxnOp, WatchEvent, write_history


def wait_for(what: str, condition: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = condition()
        except (KeychainError, httpx.HTTPError, OSError, ValueError, KeyError) as exc:
            result, last_error = None, exc
        if result:
            return result
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)




# -- recorded client operations ---------------------------------------------------------------


class RecordedClient:
    """put/get/delete through `keychain.client.Client`, each recorded in a shared Recorder.

    Outcomes map to the history's statuses: a reply is `ok` (a 404 read is an ok read of
    nothing), `OutcomeUnknown` is `unknown`, and every other error is `fail` — the client
    raises those only when no attempt can have applied the write. Errors are re-raised.
    """

    def __init__(self, url: str, recorder: Recorder, name: str, **client_options: Any) -> None:
        self.name = name
        self.recorder = recorder
        self.client = Client(url, **client_options)

    def put(self, key: str, value: str, **conditions: Any) -> int:
        call = self.recorder.invoke(self.name, "put", key, value, at=time.monotonic())
        return self._recorded_write(call, lambda: self.client.put(key, value.encode(), **conditions))

    def delete(self, key: str, **conditions: Any) -> int:
        call = self.recorder.invoke(self.name, "delete", key, at=time.monotonic())
        return self._recorded_write(call, lambda: self.client.delete(key, **conditions))

    def _recorded_write[T](
        self, call: int, write: Callable[[], T], outcome: Callable[[T], dict[str, Any]] | None = None
    ) -> T:
        """Run `write` and record its outcome for `call`: ok (with `outcome(result)`, and the version
        written: the result itself, or outcome's `version`), or why not."""
        try:
            result = write()
        except OutcomeUnknown:
            self.recorder.unknown(call)
            raise
        except KeychainError:
            self.recorder.fail(call, at=time.monotonic())
            raise
        except BaseException:
            self.recorder.unknown(call)
            raise
        extra = outcome(result) if outcome is not None else {}
        self.recorder.ok(call, at=time.monotonic(), **extra)
        self._note(call, extra.get("version", result))
        return result

    def _note(self, call: int, version: int) -> None:
        if isinstance(self.recorder, VersionedRecorder):
            self.recorder.note_version(call, version)

    def get(self, key: str, consistency: str = "strong") -> str | None:
        """The value (None when absent)."""
        call = self.recorder.invoke(self.name, "get", key, at=time.monotonic())
        try:
            value, version = self.client.get(key, consistency=consistency)
        except KeyNotFound:
            self.recorder.ok(call, at=time.monotonic(), output=None)
            return None
        except BaseException:
            self.recorder.fail(call, at=time.monotonic())
            raise
        text = value.decode()
        self.recorder.ok(call, at=time.monotonic(), output=text)
        self._note(call, version)
        return text

    def range(self, start: str, end: str | None) -> list[tuple[str, str | None]]:
        """Every key in [start, end) with its value, read as one page (one snapshot)."""
        call = self.recorder.invoke(self.name, "range", start, at=time.monotonic(), range_end=end, keys_only=False)
        try:
            page = self.client.range(start, end)
        except BaseException:
            self.recorder.fail(call, at=time.monotonic())
            raise
        assert page.next is None, "a recorded range is read as one page"
        items = tuple((item.key, None if item.value is None else item.value.decode()) for item in page.items)
        self.recorder.ok(call, at=time.monotonic(), items=items, version=page.version)
        return list(items)

    def txn(self, compare: list[Compare], success: list[TxnOp], failure: list[TxnOp]) -> bool:
        """Run a transaction of value/exists compares; returns whether the success branch ran."""

        def wire(ops: list[TxnOp]) -> list[dict[str, Any]]:
            return [{"op": op.op, "key": op.key} | ({"value": op.value} if op.op == "put" else {}) for op in ops]

        checks = [
            {"key": c.key, "exists": c.exists} if c.exists is not None
            else {"key": c.key, "value": c.value} if c.value is not None
            else {"key": c.key, "exists": False}
            for c in compare
        ]
        call = self.recorder.invoke(self.name, "txn", "", at=time.monotonic(), compare=tuple(compare),
                                    success=tuple(success), failure=tuple(failure))

        def outcome(result: TxnResult) -> dict[str, Any]:
            results = tuple(
                (r["value"].decode() if r.get("found") else None) if r["op"] == "get" else None
                for r in result.results
            )
            return {"succeeded": result.succeeded, "results": results, "version": result.version}

        done = self._recorded_write(call, lambda: self.client.txn(checks, wire(success), wire(failure)), outcome)
        return done.succeeded

    def watch(self, prefix: str, after_version: int, until: Callable[[WatchEvent], bool]) -> list[WatchEvent]:
        """Watch `prefix` after `after_version`, recording every event, until `until(event)` holds
        (then `ok`); a failure that ends the watch records it `unknown` and is raised."""
        end = _prefix_end(prefix)
        call = self.recorder.invoke(self.name, "watch", prefix, at=time.monotonic(), range_end=end,
                                    from_version=after_version)
        seen: list[WatchEvent] = []
        try:
            for got in self.client.watch(prefix, from_version=after_version + 1):
                event = WatchEvent(got.version, got.type, got.key,  # type: ignore[arg-type]
                                   None if got.value is None else got.value.decode())
                self.recorder.event(call, event, at=time.monotonic())
                seen.append(event)
                if until(event):
                    break
        except BaseException:
            self.recorder.unknown(call)
            raise
        self.recorder.ok(call, at=time.monotonic())
        return seen

    def close(self) -> None:
        self.client.close()


def _prefix_end(prefix: str) -> str | None:
    """The end of a text prefix's range (None: to the end of the key space)."""
    stripped = prefix.rstrip("\U0010ffff")
    return stripped[:-1] + chr(ord(stripped[-1]) + 1) if stripped else None


class VersionedRecorder(Recorder):
    """A Recorder that also keeps the version each completed call saw (written or read).

    Not part of the checked history; it tells a failure's causes apart: a read of an older
    version is a stale read, a newer version of an old value is a write applied twice.
    """

    def __init__(self) -> None:
        super().__init__()
        self.versions: dict[int, int] = {}

    def note_version(self, call: int, version: int) -> None:
        self.versions[call] = version


def assert_linearizable(recorder: Recorder, keep: Path) -> None:
    """Check a recorded history; on failure it is written to `keep` (JSON lines) for replay with
    `keychain check-history`, and the message shows the versions the failing window saw."""
    history = recorder.history()
    result = check(history)
    if result.ok:
        return
    write_history(history, keep)
    versions = getattr(recorder, "versions", {})
    lines = []
    for op in result.window:
        call = history.index(op)
        lines.append(f"{op.describe()}  version={versions.get(call, '?')}")
    raise AssertionError(f"{result.message}\n" + "\n".join(lines) + f"\nhistory: {keep}")


def lost_writes(history: list[Operation], final: dict[str, str | None]) -> list[str]:
    """Keys whose final value contradicts their single writer's acknowledged writes.

    For a key written by one client in sequence, the final value must be the last acknowledged
    write's, or that of a later write whose outcome is unknown (it may have landed).
    """
    problems = []
    for key, value in final.items():
        writes = [op for op in history if op.key == key and op.is_write]
        writers = {op.client for op in writes}
        assert len(writers) <= 1, f"{key} has several writers: {writers}"
        last_ok = max((i for i, op in enumerate(writes) if op.status == "ok"), default=-1)
        allowed = {writes[last_ok].value} if last_ok >= 0 else {None}
        allowed |= {op.value for op in writes[last_ok + 1 :] if op.status == "unknown"}
        if value not in allowed:
            acked = writes[last_ok].describe() if last_ok >= 0 else "none"
            problems.append(f"{key}: read {value!r}; last acknowledged write {acked}; allowed {allowed}")
    return problems


# -- a bounded background load ----------------------------------------------------------------


class Load:
    """Writer threads, each the only writer of its own keys, and readers of all those keys.

    Bounded in operations and in time; every operation is recorded. `acked_after(t)` counts the
    writes acknowledged after monotonic time t (to see that writes resume after a fault).
    """

    def __init__(
        self,
        url: str,
        recorder: Recorder,
        *,
        prefix: str,
        writers: int = 3,
        readers: int = 1,
        keys_per_writer: int = 3,
        max_ops_per_thread: int = 1500,
        max_seconds: float = 60.0,
        seed: int = 1,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.client_options = client_options or {}
        self.recorder = recorder
        self.keys = {
            f"w{w}": [f"{prefix}-w{w}-k{k}" for k in range(keys_per_writer)] for w in range(writers)
        }
        self.readers = readers
        self.max_ops = max_ops_per_thread
        self.max_seconds = max_seconds
        self.seed = seed
        self.stop_event = threading.Event()
        self.ack_times: list[float] = []
        self.errors: list[str] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    @property
    def all_keys(self) -> list[str]:
        return [key for keys in self.keys.values() for key in keys]

    def start(self) -> Load:
        self._deadline = time.monotonic() + self.max_seconds
        for name, keys in self.keys.items():
            self._threads.append(threading.Thread(target=self._write, args=(name, keys), daemon=True))
        for r in range(self.readers):
            self._threads.append(threading.Thread(target=self._read, args=(f"r{r}", r), daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def _running(self, done: int) -> bool:
        return not self.stop_event.is_set() and done < self.max_ops and time.monotonic() < self._deadline

    def _note_error(self, who: str, exc: BaseException) -> None:
        with self._lock:
            self.errors.append(f"{who}: {type(exc).__name__}: {exc}")
        time.sleep(0.05)  # the cluster is reconfiguring; do not spin

    def _write(self, name: str, keys: list[str]) -> None:
        client = RecordedClient(self.url, self.recorder, name, timeout=5.0, **self.client_options)
        done = 0
        try:
            while self._running(done):
                key = keys[done % len(keys)]
                try:
                    client.put(key, f"{name}-{done}")
                except KeychainError as exc:
                    self._note_error(name, exc)
                else:
                    with self._lock:
                        self.ack_times.append(time.monotonic())
                done += 1
        finally:
            client.close()

    def _read(self, name: str, index: int) -> None:
        client = RecordedClient(self.url, self.recorder, name, timeout=5.0, **self.client_options)
        rng = random.Random(self.seed * 1000 + index)
        keys = self.all_keys
        done = 0
        try:
            while self._running(done):
                try:
                    client.get(rng.choice(keys))
                except KeychainError as exc:
                    self._note_error(name, exc)
                done += 1
        finally:
            client.close()

    def acked(self) -> int:
        with self._lock:
            return len(self.ack_times)

    def acked_after(self, moment: float) -> int:
        with self._lock:
            return sum(1 for t in self.ack_times if t > moment)

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        for thread in self._threads:
            thread.join(timeout)
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"load threads still running: {alive}"


def read_back(
    url: str, recorder: Recorder, keys: list[str], **client_options: Any
) -> dict[str, str | None]:
    """Every key's value through a strong read, recorded; retried while the cluster settles."""
    client = RecordedClient(url, recorder, "final", timeout=5.0, **client_options)
    values: dict[str, str | None] = {}
    try:
        for key in keys:
            values[key] = wait_for(f"a read of {key}", lambda key=key: (client.get(key),), 30)[0]
    finally:
        client.close()
    return values


def longest_write_gap(history: list[Operation], start: float, end: float) -> float:
    """The longest time within [start, end] with no write acknowledged (seconds)."""
    acks = sorted(op.end for op in history if op.is_write and op.status == "ok" and op.end is not None
                  and start <= op.end <= end)
    points = [start, *acks, end]
    return max(b - a for a, b in itertools.pairwise(points)) if len(points) > 1 else end - start
