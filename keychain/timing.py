"""Timeouts that the chain nodes and the coordinators must agree on, and why they are what they are.

Two targets pull against each other:
- A failed chain node must be replaced quickly: writes flowing again within 2 s (aim: 1 s).
  That takes the coordinator noticing the silence (the lease plus a margin) and one heartbeat
  round to tell the survivors, so the lease must be short.
- A coordinator leader election must NOT interrupt the chain: while the coordinators elect a new
  leader nobody renews leases, and a node whose lease lapses stops serving. So the lease must
  outlast a worst-case election plus the time for a node to find the new leader.

Election: a follower waits ELECTION_TICKS..2*ELECTION_TICKS ticks (300-600 ms) without hearing the
leader, then PreVote + Vote take one round trip on loopback (a few ms), so a new leader is normally
in place 300-650 ms after the old one died. Nodes heartbeat every HEARTBEAT_INTERVAL and try the
next coordinator on a failure, so they reach the new leader within about 100-200 ms more: about
850 ms in the worst common case, under the 1.2 s lease. Node failure: the coordinator removes a node
silent for LEASE + REMOVAL_MARGIN (1.45 s), then every survivor learns the new epoch from its next
heartbeat reply (<= 100 ms): writes flow again about 1.5 s after a crash.

Safety does not depend on these numbers, only on the lease rule: a node's lease runs from the
moment it SENT the heartbeat, and the coordinator counts from the moment it RECEIVED it, plus a
margin for clock-rate drift (MAX_DRIFT) — so a silent node has always stopped serving before it is
removed and a new chain configuration can commit writes without it.
"""

from __future__ import annotations

TICK = 0.05  # seconds per Raft tick
ELECTION_TICKS = 6  # election timeout: randomized in [ELECTION_TICKS, 2 * ELECTION_TICKS) ticks
HEARTBEAT_TICKS = 1  # the Raft leader's heartbeat to its followers, in ticks

HEARTBEAT_INTERVAL = 0.1  # seconds between a chain node's heartbeats to the coordinator
LEASE = 1.2  # seconds a heartbeat reply lets a node serve, from when the heartbeat was sent
MAX_DRIFT = 0.05  # assumed bound on relative clock-rate drift between a node and a coordinator
REMOVAL_MARGIN = 0.25  # extra silence, beyond the lease, before the leader removes a node

# A node is removed only after silence > LEASE * (1 + MAX_DRIFT) + REMOVAL_MARGIN.
REMOVAL_AFTER = LEASE * (1 + MAX_DRIFT) + REMOVAL_MARGIN

RPC_TIMEOUT = 1.0  # default deadline of one internal RPC
# A node's heartbeat gives up on a coordinator after this long and tries the next one. A heartbeat is
# answered in milliseconds; one sent to a leader that is paused or cut off one way gets no answer,
# and the lease must be renewed elsewhere before it lapses: HEARTBEAT_INTERVAL + HEARTBEAT_TIMEOUT +
# a new leader (<= 650 ms, above) = 1.15 s < LEASE. With RPC_TIMEOUT the node lost its lease first.
HEARTBEAT_TIMEOUT = 0.4

# The coordinator leader's supervision of nodes (keychain.coordinator.supervision):
# A leader grants a lease only while a quorum acknowledged it at most this long ago (one election
# timeout's lower bound: no other leader can have been elected since that acknowledgement began).
LEADER_EVIDENCE = ELECTION_TICKS * TICK
# A new leader's extra wait before removing anyone: the longest a deposed leader may still have
# been renewing leases (CheckQuorum notices a lost quorum within two election timeouts).
NEW_LEADER_GRACE = 2 * 2 * ELECTION_TICKS * TICK
PROPOSAL_TIMEOUT = 2.0  # seconds a registry change may take to commit and apply

# Internal gRPC channels (node links, node -> coordinator, proxy -> node and -> coordinator), see
# keychain.channel_policy. A path that heals must be used again within about a second:
# - a connection attempt gives up after CONNECT_TIMEOUT (gRPC's min_reconnect_backoff_ms; its
#   default of 20 s lets one SYN lost to a partition hold the channel for 20 s after the heal);
#   a second is still far above a TLS handshake on a loaded machine, so a slow peer is not cut off;
# - between attempts gRPC waits at most RECONNECT_MAX (its default grows to 120 s);
# - an established connection through which nothing comes back for CHANNEL_KEEPALIVE_TIME +
#   CHANNEL_KEEPALIVE_TIMEOUT is closed and dialled again: TCP on its own keeps retransmitting into a
#   healed path with an exponentially growing timeout (seconds after a fault of a few seconds).
CONNECT_TIMEOUT = 1.0
RECONNECT_INITIAL = 0.1  # gRPC's floor for both reconnect settings is 100 ms
RECONNECT_MAX = 0.5
CHANNEL_KEEPALIVE_TIME = 1.0  # gRPC keepalive pings (the link's own keepalive is KEEPALIVE_INTERVAL)
CHANNEL_KEEPALIVE_TIMEOUT = 1.0
# Application-level retries of a broken stream (a node's link or state transfer): the bound a
# FailureStreak's delay never exceeds.
STREAM_RETRY_MAX = 0.5

# ---- Gray failures: a node alive to the coordinator but failing its links or stalled ----
# (keychain.node.link_health reports them with each heartbeat; keychain.coordinator.suspicion decides.)
#
# The goal: during a single gray fault, acknowledged writes stop for at most 2 s. The write gap is
#     LINK_TIMEOUT                     a condition must last this long before it is reported
#   + HEARTBEAT_INTERVAL               until the next heartbeat carries the report (<= 0.1 s)
#   + 2 * HEARTBEAT_INTERVAL           the claims settle: no new one for this long (the claims one
#                                      fault causes arrive over about a heartbeat interval, in any
#                                      order; suspicion.py)
#   + 2 * HEARTBEAT_INTERVAL           the lease surrender: the suspect's next heartbeat is answered
#                                      with lease 0, the one after says it dropped its lease
#   + a Raft commit                    the removal (tens of ms on loopback)
#   + HEARTBEAT_INTERVAL               until the survivors' heartbeat replies carry the new epoch
#   + a link handshake                 Hello / Welcome (a round trip)
# = 0.5 + 0.1 + 0.2 + 0.2 + ~0.05 + 0.1 + ~0.01 ~ 1.2 s, plus up to a heartbeat interval of timer
# phases (the simulator measures 1.2-1.4 s for a middle or tail cut off from its neighbours), or
# ~1.65 s when the suspect never answers the surrender (its lease must lapse: REMOVAL_AFTER after its
# last grant). A fault only the culprit's second link reveals (a head whose own traffic is dropped:
# its first dead link removes its successor, the second it) takes two rounds, ~2.6 s in the
# simulator; a proxy's report (a head that accepts no writes) implicates the head in the first.
#
# Why not shorter: every bound must outlast what a healthy node can show. A link carries a
# keepalive every KEEPALIVE_INTERVAL, so LINK_TIMEOUT is five keepalives missed: an event loop
# stalled by a burst of load or a GC pause of a few hundred ms does not look like a dead link.
# A healthy fsync takes milliseconds, a slow disk under load a few hundred; SYNC_STALL lets one take
# a full second before the node counts itself stalled (a removal costs a rejoin and a state catch-up,
# so a slow disk must not look like a dead one): a stalled sync leaves a gap of about
# SYNC_STALL + 0.5 s ~ 1.5 s (its predecessor's "not acking" waits for the node's own word).
KEEPALIVE_INTERVAL = HEARTBEAT_INTERVAL  # an idle downlink carries an empty Batch this often
LINK_TIMEOUT = 0.5  # a link without traffic (or a Hello without a Welcome, entries without an ack) this long is dead
SYNC_STALL = 1.0  # a sync pending (or entries not yet durable) this long without progress: the node is stalled
# A link report counts at the coordinator only while it is this fresh (the node reports every
# HEARTBEAT_INTERVAL; a node that stopped reporting is the lease's business).
REPORT_TTL = 3 * HEARTBEAT_INTERVAL
# A proxy's report that it cannot use a node counts this long (proxies report when a request fails).
PROXY_REPORT_TTL = 1.0
# Re-admission of a node removed for link failures: its registration is refused for
# READMIT_BASE * 2^(n-1) seconds after its n-th such removal (capped at READMIT_CAP); the count
# starts over once it stayed READMIT_FORGET without such a removal. The first hold is short, so a
# healed node rejoins within about a second; a node that keeps failing its links waits longer.
READMIT_BASE = 1.0
READMIT_CAP = 30.0
READMIT_FORGET = 60.0
# A node drained on purpose (RemoveMember, an operator's scale-in) is refused registration this
# long: its process is stopping, and re-admitted it would briefly become tail and stall writes.
DRAIN_HOLD = 15.0

# The proxy's view of a node (keychain.proxy.reachability): a node that has left a request of this
# proxy unanswered for PROXY_SILENCE (no reply, no connection, a call that failed in transit) is
# probed: asked for its status, which any live node answers at once. Only if two probes in a row go
# unanswered for PROXY_PROBE_TIMEOUT each is it reported to the coordinator (ReportUnreachable;
# one missed probe may be a machine loaded past its cores), again every
# PROXY_REPORT_EVERY while that lasts. The probe is what tells a head waiting on the chain (a
# reconfiguration below it, a stalled member: its writes wait, but it answers) from a head nobody
# can reach; so the silence bound can be short, a few times a healthy write's latency, and the
# probe's deadline is the links' (LINK_TIMEOUT: an event loop that cannot answer within it looks
# dead to its neighbours as well). Re-sent well within PROXY_REPORT_TTL so that a report that
# counts never lapses while the node stays silent.
PROXY_SILENCE = 0.25
PROXY_PROBE_TIMEOUT = LINK_TIMEOUT
PROXY_REPORT_EVERY = 0.25
