"""Throw-away test PKI made with the openssl CLI (never committed): a CA, a server certificate for
localhost / 127.0.0.1 / ::1, a client certificate, and a second, untrusted CA with its own client.

    python sidecar/tests/certs.py OUT_DIR     # also used by the TypeScript security e2e test
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DAYS = "2"
CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
SERVER_NAMES = "DNS:localhost,IP:127.0.0.1,IP:::1,DNS:sahara-sidecar.sahara.svc.cluster.local"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(out: Path, name: str) -> None:
    _openssl(
        "req", "-x509", *CURVE, "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", DAYS,
        "-subj", f"/CN=sahara test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=out,
    )  # fmt: skip


def _leaf(out: Path, name: str, ca: str, extensions: str) -> None:
    (out / f"{name}.ext").write_text(extensions)
    _openssl("req", *CURVE, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=sahara {name}", cwd=out)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
        "-out", f"{name}.crt", "-days", DAYS, "-extfile", f"{name}.ext",
        cwd=out,
    )  # fmt: skip


def make_pki(out: Path) -> dict[str, Path]:
    """Paths by role: ca, server_cert/key, client_cert/key, other_ca, rogue_cert/key (signed by other_ca)."""
    out.mkdir(parents=True, exist_ok=True)
    _ca(out, "ca")
    _ca(out, "other-ca")
    _leaf(
        out, "server", "ca", f"subjectAltName={SERVER_NAMES}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
    )
    _leaf(out, "client", "ca", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    _leaf(out, "rogue", "other-ca", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    return {
        "ca": out / "ca.crt",
        "server_cert": out / "server.crt",
        "server_key": out / "server.key",
        "client_cert": out / "client.crt",
        "client_key": out / "client.key",
        "other_ca": out / "other-ca.crt",
        "rogue_cert": out / "rogue.crt",
        "rogue_key": out / "rogue.key",
    }


if __name__ == "__main__":
    make_pki(Path(sys.argv[1]))
