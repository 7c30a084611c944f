"""A tiny stand-in for the coordinator's HTTP admin API, for the operator tests only.

It serves `GET /v1/status`, `DELETE /v1/chains/{chain}/members/{id}` and the coordinator's own
membership (`POST /v1/members`, `DELETE /v1/members/{id}`) on 127.0.0.1 from state the test
controls: the test adds nodes (as syncing), promotes them, marks them unhealthy or suspected of a gray
failure, removes one for failing its links and holds it back from rejoining, or makes removals
answer 503 for a while. Removals raise the epoch like the real registry does, and refuse to remove
the last active member. An added coordinator member is a voter at once, unless the test holds it
back as a learner that has not caught up (503, as the real one answers).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeMember:
    id: str
    state: str = "syncing"
    healthy: bool = True
    suspected: str = ""


class FakeCoordinator:
    def __init__(self, chain: str, leader: str = "mychain-coord-0") -> None:
        self.chain = chain
        self.leader = leader
        self.epoch = 1
        self.members: list[FakeMember] = []
        self.removals: list[str] = []  # member ids, in the order they were removed
        self.refuse_removals = False  # answer 503, as during an election
        # The coordinator's own Raft members: id -> voter (False: a learner still catching up).
        self.coordinators: dict[str, bool] = {f"mychain-coord-{i}": True for i in range(3)}
        self.catching_up: set[str] = set()  # members an add leaves a learner (not caught up yet)
        self.coordinator_changes: list[str] = []  # "+id address" and "-id", in order
        self.held: list[dict[str, Any]] = []  # the /v1/status `held` entries: nodes held back from rejoining
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeCoordinator:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- what the test does to the chain -------------------------------------------------

    def join(self, member_id: str, *, active: bool = False, healthy: bool = True) -> None:
        """A node registers: appended after the tail, syncing unless said otherwise."""
        with self._lock:
            self.members.append(FakeMember(member_id, "active" if active else "syncing", healthy))
            self.epoch += 1

    def promote(self, member_id: str) -> None:
        with self._lock:
            self._member(member_id).state = "active"
            self.epoch += 1

    def set_healthy(self, member_id: str, healthy: bool) -> None:
        with self._lock:
            self._member(member_id).healthy = healthy

    def suspect(self, member_id: str, why: str) -> None:
        """The leader is removing `member_id` for a gray failure."""
        with self._lock:
            self._member(member_id).suspected = why

    def remove_for_links(self, member_id: str, removals: int, hold_ms: int) -> None:
        """The leader removed `member_id` for failing its links and holds back its registration."""
        with self._lock:
            self.members.remove(self._member(member_id))
            self.epoch += 1
            self.held = [h for h in self.held if h["id"] != member_id]
            self.held.append({"id": member_id, "remaining_ms": hold_ms, "removals": removals,
                              "reason": "its successor does not ack"})  # fmt: skip

    def coordinator_ids(self) -> list[str]:
        with self._lock:
            return list(self.coordinators)

    def ids(self) -> list[str]:
        with self._lock:
            return [m.id for m in self.members]

    def _member(self, member_id: str) -> FakeMember:
        return next(m for m in self.members if m.id == member_id)

    # --- the HTTP API ----------------------------------------------------------------------

    def status_document(self) -> dict[str, Any]:
        with self._lock:
            active = [m for m in self.members if m.state == "active"]
            syncing = [m for m in self.members if m.state != "active"]
            members = []
            for i, m in enumerate(active):
                role = "head" if i == 0 else "tail" if i == len(active) - 1 else "middle"
                members.append({"id": m.id, "address": f"{m.id}:7100", "state": m.state, "role": role,
                                "healthy": m.healthy, **({"suspected": m.suspected} if m.suspected else {})})  # fmt: skip
            for m in syncing:
                members.append({"id": m.id, "address": f"{m.id}:7100", "state": m.state, "role": "syncing",
                                "healthy": m.healthy, **({"suspected": m.suspected} if m.suspected else {})})  # fmt: skip
            chain: dict[str, Any] = {"name": self.chain, "epoch": self.epoch, "members": members}
            if self.held:
                chain["held"] = [dict(h) for h in self.held]
            return {
                "leader": self.leader,
                "members": [{"id": c, "address": f"{c}:7000", "role": "leader" if c == self.leader else "follower",
                             "suffrage": "voter" if voter else "learner"} for c, voter in self.coordinators.items()],
                "chains": [chain],
            }

    def remove(self, chain: str, member_id: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if self.refuse_removals:
                return 503, {"error": "unavailable", "message": "electing a leader"}
            member = next((m for m in self.members if m.id == member_id), None)
            if chain != self.chain or member is None:
                return 404, {"error": "not_found", "message": f"{member_id} is not a member"}
            if member.state == "active" and sum(m.state == "active" for m in self.members) == 1:
                return 409, {"error": "last_member", "message": "cannot remove the last active member"}
            self.members.remove(member)
            self.removals.append(member_id)
            self.epoch += 1
            return 200, {"epoch": self.epoch}

    def add_coordinator(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            member, address = body.get("id"), body.get("address")
            if not member or not address:
                return 400, {"error": "invalid_argument", "message": "id and address"}
            others = [c for c, voter in self.coordinators.items() if not voter and c != member]
            if others:
                return 409, {"error": "failed_precondition", "message": f"{others[0]} is still a learner"}
            if member not in self.coordinators:
                self.coordinator_changes.append(f"+{member} {address}")
            self.coordinators[member] = member not in self.catching_up
            if member in self.catching_up:
                return 503, {"error": "unavailable", "message": f"{member} did not catch up; it stays a learner"}
            return 201, {"members": [{"id": c} for c in self.coordinators]}

    def remove_coordinator(self, member: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if member not in self.coordinators:
                return 404, {"error": "not_found", "message": f"{member} is not a coordinator member"}
            del self.coordinators[member]
            self.coordinator_changes.append(f"-{member}")
            return 200, {"members": [{"id": c} for c in self.coordinators]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/v1/status":
                    self._reply(200, fake.status_document())
                else:
                    self._reply(404, {"error": "not_found", "message": self.path})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.path == "/v1/members":
                    self._reply(*fake.add_coordinator(body))
                else:
                    self._reply(404, {"error": "not_found", "message": self.path})

            def do_DELETE(self) -> None:
                parts = self.path.strip("/").split("/")
                if len(parts) == 5 and parts[:2] == ["v1", "chains"] and parts[3] == "members":
                    self._reply(*fake.remove(parts[2], parts[4]))
                elif len(parts) == 3 and parts[:2] == ["v1", "members"]:
                    self._reply(*fake.remove_coordinator(parts[2]))
                else:
                    self._reply(404, {"error": "not_found", "message": self.path})

            def _reply(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if code == 503:
                    self.send_header("Retry-After", "1")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:  # keep test output quiet
                pass

        return Handler
