"""A node's link-health report on the wire: `keychain.node.link_health.LinkReport` as the
coordinator protocol's `LinkHealth` message and back (the node's heartbeat sends it, the coordinator
reads it and shows it in its cluster status)."""

from __future__ import annotations

from keychain.node.link_health import LinkReport

from keychain.proto import coordinator_pb2


def link_report_from_pb(pb: coordinator_pb2.LinkHealth) -> LinkReport:
    """A heartbeat's link-health message as the supervision core's report."""
    return LinkReport(
        epoch=pb.epoch, successor=pb.successor, successor_unreachable=pb.successor_unreachable,
        successor_not_acking=pb.successor_not_acking, successor_acked=pb.successor_acked,
        predecessor=pb.predecessor, predecessor_silent=pb.predecessor_silent, stalled=pb.stalled,
        coordinator_unheard=pb.coordinator_unheard,
    )


def link_report_to_pb(report: LinkReport) -> coordinator_pb2.LinkHealth:
    """A link-health report as its protobuf message."""
    return coordinator_pb2.LinkHealth(
        epoch=report.epoch, successor=report.successor, successor_unreachable=report.successor_unreachable,
        successor_not_acking=report.successor_not_acking, successor_acked=report.successor_acked,
        predecessor=report.predecessor, predecessor_silent=report.predecessor_silent, stalled=report.stalled,
        coordinator_unheard=report.coordinator_unheard,
    )
