"""The three files of a component's mutual TLS (`--tls-cert`, `--tls-key`, `--tls-ca`) and their flags.

Kept apart from `keychain.tls` so a component's command line parses without loading gRPC.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    """A component's certificate, its private key, and the CA certificate it trusts (PEM files)."""

    cert: Path
    key: Path
    ca: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(cert, key, ca) bytes."""
        return self.cert.read_bytes(), self.key.read_bytes(), self.ca.read_bytes()

    def stamp(self) -> tuple[tuple[int, int, int], ...]:
        """Changes whenever any of the files is replaced or rewritten."""
        out = []
        for path in (self.cert, self.key, self.ca):
            try:
                st = path.stat()
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except FileNotFoundError:
                out.append((0, 0, 0))
        return tuple(out)

    def argv(self) -> list[str]:
        """The flags that hand these files to a component's command line."""
        return ["--tls-cert", str(self.cert), "--tls-key", str(self.key), "--tls-ca", str(self.ca)]

    def load_checked(self) -> tuple[bytes, bytes, bytes]:
        """(cert, key, ca) read and checked to belong together: the key is the certificate's and the
        CA parses. Raises ValueError otherwise (e.g. in the middle of a rotation)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        cert_pem, key_pem, ca_pem = self.read()
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        x509.load_pem_x509_certificates(ca_pem)
        if key.public_key() != cert.public_key():
            raise ValueError(f"{self.key} is not the private key of {self.cert}")
        return cert_pem, key_pem, ca_pem


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --tls-cert/--tls-key/--tls-ca (all three or none) to a component's parser."""
    g = parser.add_argument_group("mutual TLS (all three, or none for plaintext)")
    g.add_argument("--tls-cert", type=Path, help="this component's certificate (PEM; reloaded when it changes)")
    g.add_argument("--tls-key", type=Path, help="its private key (PEM; reloaded when it changes)")
    g.add_argument("--tls-ca", type=Path, help="the chain's CA certificate: peers must present one it signed")


def tls_files_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None
                        ) -> TlsFiles | None:
    """The TlsFiles the flags name, None when none is given; an error when only some are."""
    given = [getattr(args, "tls_cert", None), getattr(args, "tls_key", None), getattr(args, "tls_ca", None)]
    if not any(given):
        return None
    if not all(given):
        message = "--tls-cert, --tls-key and --tls-ca go together: give all three or none"
        if parser is not None:
            parser.error(message)
        raise ValueError(message)
    return TlsFiles(*given)  # type: ignore[arg-type]
