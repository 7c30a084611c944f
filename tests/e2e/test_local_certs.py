"""`keychain up --tls`'s certificates: made once per data dir, reused, completed, renewed; and the
flags every component gets from them."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from keychain import tls
from keychain.access import Identity
from keychain.local import Layout, Supervisor, build_components, parse_args, previous_layout, resolve_layout
from keychain.local_certs import LocalCertificates

COMPONENTS = [("coord-1", "coordinator"), ("node-1", "node"), ("node-2", "node"), ("proxy", "proxy")]


def mtimes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in directory.iterdir()}


def test_the_first_run_makes_a_ca_and_a_certificate_naming_each_component(tmp_path: Path) -> None:
    certs = LocalCertificates.ensure(tmp_path, "main", COMPONENTS)
    ca = tls.load_issued(tmp_path / "ca.pem", tmp_path / "ca-key.pem")
    assert tls.ca_chain(ca) == "main"
    for name, kind in COMPONENTS:
        files = certs.components[name]
        files.load_checked()
        issued = tls.load_issued(files.cert)
        issued.certificate.verify_directly_issued_by(ca.certificate)
        assert issued.identity == Identity("main", kind, name)
    admin = tls.load_issued(certs.admin.cert)
    assert admin.identity is not None and admin.identity.kind == "admin"
    assert certs.describe() == {"ca": str(tmp_path / "ca.pem"), "cert": str(certs.admin.cert),
                                "key": str(certs.admin.key)}
    assert (tmp_path / "ca-key.pem").stat().st_mode & 0o077 == 0, "private keys are the owner's alone"


def test_a_later_run_reuses_every_file_and_issues_only_for_new_components(tmp_path: Path) -> None:
    LocalCertificates.ensure(tmp_path, "main", COMPONENTS)
    before = mtimes(tmp_path)
    LocalCertificates.ensure(tmp_path, "main", [*COMPONENTS, ("node-3", "node")])
    after = mtimes(tmp_path)
    assert {k: after[k] for k in before} == before
    assert set(after) - set(before) == {"node-node-3.pem", "node-node-3-key.pem"}


def test_a_certificate_of_another_ca_or_about_to_expire_is_issued_again(tmp_path: Path) -> None:
    certs = LocalCertificates.ensure(tmp_path, "main", COMPONENTS)
    stranger = tls.issue_certificate(tls.issue_ca("main"), kind="node", name="node-1", hosts=["127.0.0.1"])
    tls.write_pem(stranger, certs.components["node-1"].cert, certs.components["node-1"].key)
    ca = tls.load_issued(tmp_path / "ca.pem", tmp_path / "ca-key.pem")
    expiring = tls.issue_certificate(ca, kind="node", name="node-2", valid_for=datetime.timedelta(hours=2))
    tls.write_pem(expiring, certs.components["node-2"].cert, certs.components["node-2"].key)

    again = LocalCertificates.ensure(tmp_path, "main", COMPONENTS)
    for name in ("node-1", "node-2"):
        issued = tls.load_issued(again.components[name].cert)
        issued.certificate.verify_directly_issued_by(ca.certificate)
        assert issued.not_after - datetime.datetime.now(datetime.UTC) > datetime.timedelta(days=30)


def test_every_component_gets_its_own_files_and_the_proxy_serves_https(tmp_path: Path) -> None:
    layout = resolve_layout(parse_args(["--tls", "--nodes", "2", "--coordinators", "1"]), tmp_path, {})
    assert layout.tls and layout.scheme == "https"
    plain = build_components(layout, ["python"], "warning")
    certs = LocalCertificates.ensure(tmp_path / "tls", layout.chain, [(c.name, c.kind) for c in plain])
    components = build_components(layout, ["python"], "warning", certs)
    for c in components:
        argv = c.argv
        assert argv[argv.index("--tls-cert") + 1] == str(certs.components[c.name].cert), c.name
        assert argv[argv.index("--tls-ca") + 1] == str(certs.ca), c.name
    proxy = next(c for c in components if c.kind == "proxy")
    assert proxy.argv[proxy.argv.index("--https-client-ca") + 1] == str(certs.ca)
    assert proxy.extra["url"].startswith("https://")
    assert all("--tls-cert" not in c.argv and "--https-cert" not in c.argv for c in plain)

    Supervisor(layout, components, certs=certs).write_cluster_json()
    doc = json.loads((tmp_path / "cluster.json").read_text())
    assert doc["proxy"].startswith("https://") and doc["tls"] == certs.describe()
    assert doc["layout"]["tls"] is True


def test_a_data_dir_keeps_tls_unless_told_otherwise(tmp_path: Path) -> None:
    first = resolve_layout(parse_args(["--tls"]), tmp_path, {})
    (tmp_path / "cluster.json").write_text(json.dumps({"layout": first.pinned()}))
    assert resolve_layout(parse_args([]), tmp_path, previous_layout(tmp_path)).tls
    assert not resolve_layout(parse_args(["--no-tls"]), tmp_path, previous_layout(tmp_path)).tls
    assert not Layout(tmp_path, 3, 3, 8080, 8081, 7000, "main").tls
