"""A throwaway PKI for the TLS tests, made with the `openssl` command line.

`make_pki(directory)` writes two independent CAs: the trusted one signs a
server certificate (SAN IP:127.0.0.1 and DNS:localhost) and a client
certificate; the "rogue" one signs a client certificate the server must
refuse. Keys are P-256 EC, valid for two days, unencrypted.
"""
from __future__ import annotations

import dataclasses
import pathlib
import shutil
import subprocess

_CA_EXT = """
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""
_SERVER_EXT = """
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
authorityKeyIdentifier = keyid
"""
_CLIENT_EXT = """
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
"""
_REQ_CONFIG = """
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
"""


@dataclasses.dataclass(frozen=True)
class Pki:
    ca_cert: pathlib.Path
    server_cert: pathlib.Path
    server_key: pathlib.Path
    client_cert: pathlib.Path
    client_key: pathlib.Path
    rogue_ca_cert: pathlib.Path
    rogue_client_cert: pathlib.Path
    rogue_client_key: pathlib.Path

    @staticmethod
    def read(path: pathlib.Path) -> bytes:
        return path.read_bytes()


def _openssl(*args: str, cwd: pathlib.Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {done.stderr}")


def _key(directory: pathlib.Path, name: str) -> pathlib.Path:
    path = directory / f"{name}.key"
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path.name, cwd=directory)
    return path


def _ca(directory: pathlib.Path, name: str, cn: str) -> tuple[pathlib.Path, pathlib.Path]:
    key = _key(directory, name)
    csr = directory / f"{name}.csr"
    _openssl("req", "-new", "-config", "req.cnf", "-key", key.name, "-subj", f"/CN={cn}", "-out", csr.name, cwd=directory)
    (directory / f"{name}.ext").write_text(_CA_EXT)
    cert = directory / f"{name}.pem"
    _openssl(
        "x509", "-req", "-in", csr.name, "-signkey", key.name, "-days", "2",
        "-extfile", f"{name}.ext", "-out", cert.name, cwd=directory,
    )
    return cert, key


def _leaf(
    directory: pathlib.Path, name: str, cn: str, ext: str, ca: tuple[pathlib.Path, pathlib.Path]
) -> tuple[pathlib.Path, pathlib.Path]:
    key = _key(directory, name)
    csr = directory / f"{name}.csr"
    _openssl("req", "-new", "-config", "req.cnf", "-key", key.name, "-subj", f"/CN={cn}", "-out", csr.name, cwd=directory)
    (directory / f"{name}.ext").write_text(ext)
    cert = directory / f"{name}.pem"
    ca_cert, ca_key = ca
    _openssl(
        "x509", "-req", "-in", csr.name, "-CA", ca_cert.name, "-CAkey", ca_key.name,
        "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", cert.name, cwd=directory,
    )
    return cert, key


def make_pki(directory: pathlib.Path) -> Pki:
    """Writes the CAs, keys and certificates under `directory` (which must exist)."""
    if shutil.which("openssl") is None:
        raise RuntimeError("the TLS tests need the openssl command line tool")
    (directory / "req.cnf").write_text(_REQ_CONFIG)
    ca = _ca(directory, "ca", "tensord test CA")
    server = _leaf(directory, "server", "localhost", _SERVER_EXT, ca)
    client = _leaf(directory, "client", "tensord test client", _CLIENT_EXT, ca)
    rogue_ca = _ca(directory, "rogue-ca", "tensord rogue CA")
    rogue_client = _leaf(directory, "rogue-client", "tensord test client", _CLIENT_EXT, rogue_ca)
    return Pki(
        ca_cert=ca[0],
        server_cert=server[0],
        server_key=server[1],
        client_cert=client[0],
        client_key=client[1],
        rogue_ca_cert=rogue_ca[0],
        rogue_client_cert=rogue_client[0],
        rogue_client_key=rogue_client[1],
    )
