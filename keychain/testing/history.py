"""Client operation histories: the model, the JSON-lines format and a recorder.

A history is what the clients saw: for each operation, who issued it, what it asked, when it
started and ended on one clock, how it ended and what it returned. One JSON object a line:

    {"client": "c1", "op": "put", "key": "k", "value": "v", "start": 1.25, "end": 1.31,
     "status": "ok", "output": null}

- `put` writes `value`; `delete` removes the key; `get` read `output` (null = absent).
- `status` is `ok` (took effect between `start` and `end`), `fail` (certainly had no effect)
  or `unknown` (may take effect at any time after `start`, or never; its `end` is null).

`Recorder` is how the simulator and the process tests log their clients' operations as they
happen; whatever is still pending when the history is taken is reported as `unknown`.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Literal

OpKind = Literal["put", "get", "delete"]
Status = Literal["ok", "fail", "unknown"]

OP_KINDS: tuple[str, ...] = ("put", "get", "delete")
STATUSES: tuple[str, ...] = ("ok", "fail", "unknown")
FIELDS: tuple[str, ...] = ("client", "op", "key", "value", "start", "end", "status", "output")
# Fields that may be left out of a line; they then read as null.
OPTIONAL_FIELDS = frozenset({"value", "end", "output"})


class HistoryError(ValueError):
    """A history that does not follow the format; the message names the line when there is one."""


@dataclass(frozen=True, slots=True)
class Operation:
    """One client operation as the client observed it."""

    client: str
    op: OpKind
    key: str
    value: str | None
    start: float
    end: float | None
    status: Status
    output: str | None = None

    def __post_init__(self) -> None:
        for name in ("client", "key"):
            if not isinstance(getattr(self, name), str):
                raise HistoryError(f"{name!r} must be a string, got {getattr(self, name)!r}")
        if self.op not in OP_KINDS:
            raise HistoryError(f"'op' must be one of {', '.join(OP_KINDS)}, got {self.op!r}")
        if self.status not in STATUSES:
            raise HistoryError(f"'status' must be one of {', '.join(STATUSES)}, got {self.status!r}")
        if self.op == "put" and not isinstance(self.value, str):
            raise HistoryError(f"a put needs a string 'value', got {self.value!r}")
        if self.op != "put" and self.value is not None:
            raise HistoryError(f"a {self.op} takes no 'value' (must be null), got {self.value!r}")
        if self.output is not None and not isinstance(self.output, str):
            raise HistoryError(f"'output' must be a string or null, got {self.output!r}")
        _check_time("start", self.start)
        if self.end is not None:
            _check_time("end", self.end)
            if self.end < self.start:
                raise HistoryError(f"'end' ({self.end}) is before 'start' ({self.start})")
        if self.status == "ok" and self.end is None:
            raise HistoryError("an 'ok' operation needs an 'end' time")
        if self.status == "unknown" and self.end is not None:
            # The effect of an unknown write may land at any later time, so it has no end.
            raise HistoryError("an 'unknown' operation has no 'end' (must be null)")

    @property
    def is_write(self) -> bool:
        return self.op != "get"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def describe(self) -> str:
        """A short readable form, e.g. `c1 put 'a' [1.000, 1.100] ok`."""
        if self.op == "put":
            what = f"put {self.value!r}"
        elif self.op == "delete":
            what = "delete"
        elif self.status == "ok":
            what = f"get -> {'absent' if self.output is None else repr(self.output)}"
        else:
            what = "get"
        end = "..." if self.end is None else f"{self.end:.6g}"
        return f"{self.client} {what} [{self.start:.6g}, {end}] {self.status}"


def _check_time(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise HistoryError(f"{name!r} must be a finite number of seconds, got {value!r}")


def parse_operation(obj: object) -> Operation:
    """Build an Operation from one decoded JSON object, rejecting missing or unknown fields."""
    if not isinstance(obj, dict):
        raise HistoryError(f"expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        raise HistoryError(f"unknown field(s) {', '.join(map(repr, unknown))}")
    missing = [name for name in FIELDS if name not in obj and name not in OPTIONAL_FIELDS]
    if missing:
        raise HistoryError(f"missing field(s) {', '.join(map(repr, missing))}")
    start, end = obj["start"], obj.get("end")
    _check_time("start", start)
    if end is not None:
        _check_time("end", end)
    return Operation(
        client=obj["client"],
        op=obj["op"],
        key=obj["key"],
        value=obj.get("value"),
        start=float(start),
        end=None if end is None else float(end),
        status=obj["status"],
        output=obj.get("output"),
    )


def parse_lines(lines: Iterable[str], source: str = "<history>") -> list[Operation]:
    """Parse JSON lines (blank lines are skipped); an invalid line raises HistoryError naming it."""
    ops: list[Operation] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            ops.append(parse_operation(json.loads(line)))
        except json.JSONDecodeError as exc:
            raise HistoryError(f"{source}:{number}: not valid JSON ({exc.msg})") from None
        except HistoryError as exc:
            raise HistoryError(f"{source}:{number}: {exc}") from None
    return ops


def read_history(path: str | Path) -> list[Operation]:
    """Read a JSON-lines history file."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as file:
            return parse_lines(file, source=str(path))
    except UnicodeDecodeError as exc:
        raise HistoryError(f"{path}: not UTF-8 text ({exc.reason})") from None


def dump_lines(ops: Iterable[Operation]) -> str:
    """The JSON-lines text of a history, one operation a line, fields in the documented order."""
    return "".join(json.dumps(op.to_dict()) + "\n" for op in ops)


def write_history(ops: Iterable[Operation], target: str | Path | IO[str]) -> None:
    """Write a history as JSON lines to a path or an open text file."""
    text = dump_lines(ops)
    if isinstance(target, str | Path):
        Path(target).write_text(text, encoding="utf-8")
    else:
        target.write(text)


class Recorder:
    """Logs client operations as they are invoked and completed, in any clock the caller uses.

    Safe to share between threads (process tests drive several clients at once). Calls still
    pending when `history()` is taken are reported as `unknown`: a client that never heard back
    cannot know whether its write took effect.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[dict[str, object]] = []
        self._closed: set[int] = set()

    def invoke(self, client: str, op: OpKind, key: str, value: str | None = None, *, at: float) -> int:
        """Record the start of an operation; returns the call id to complete it with."""
        Operation(client, op, key, value, at, None, "unknown")  # validate now, not at the end
        with self._lock:
            self._calls.append(
                {
                    "client": client,
                    "op": op,
                    "key": key,
                    "value": value,
                    "start": at,
                    "end": None,
                    "status": "unknown",
                    "output": None,
                }
            )
            return len(self._calls) - 1

    def ok(self, call: int, *, at: float, output: str | None = None) -> None:
        """The operation succeeded at time `at`; a get passes what it read (None = absent)."""
        self._finish(call, status="ok", end=at, output=output)

    def fail(self, call: int, *, at: float) -> None:
        """The operation certainly had no effect."""
        self._finish(call, status="fail", end=at, output=None)

    def unknown(self, call: int) -> None:
        """The client gave up without learning the outcome; the effect may still land later."""
        self._finish(call, status="unknown", end=None, output=None)

    def _finish(self, call: int, *, status: Status, end: float | None, output: str | None) -> None:
        with self._lock:
            if not 0 <= call < len(self._calls):
                raise HistoryError(f"no such call id {call}")
            record = self._calls[call]
            if call in self._closed:
                raise HistoryError(f"call {call} was already completed as {record['status']}")
            updated = {**record, "status": status, "end": end, "output": output}
            Operation(**updated)  # type: ignore[arg-type]
            self._calls[call] = updated
            self._closed.add(call)

    def history(self) -> list[Operation]:
        """The operations so far, in invocation order."""
        with self._lock:
            return [Operation(**call) for call in self._calls]  # type: ignore[arg-type]
