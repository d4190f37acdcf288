"""The relay's self-signed TLS certificate and its pin.

Clients do not trust the certificate through a CA: the enrolment file carries
its pin, the lowercase hex SHA-256 of the certificate's DER SubjectPublicKeyInfo,
so a renewed certificate over the same key keeps the same pin.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sync.relay.fsio import atomic_write

CERT_FILE: Final = "cert.pem"
KEY_FILE: Final = "key.pem"
VALIDITY: Final = datetime.timedelta(days=3650)  # pinned, not CA-checked: expiry adds nothing


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path

    @classmethod
    def in_folder(cls, folder: Path) -> TlsFiles:
        return cls(folder / CERT_FILE, folder / KEY_FILE)


def _san(hostname: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(hostname)))
    except ValueError:
        names.append(x509.DNSName(hostname))
    loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    if loopback not in names:
        names.append(loopback)
    return names


def make_certificate(hostname: str, now: datetime.datetime) -> tuple[bytes, bytes]:
    """A new ECDSA P-256 key and a self-signed certificate for ``hostname`` and 127.0.0.1.

    Returns (certificate PEM, PKCS#8 key PEM).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64])])
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_san(hostname)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def spki_pin(cert: x509.Certificate) -> str:
    """The lowercase hex SHA-256 of the certificate's DER SubjectPublicKeyInfo."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def pin_of_pem(cert_pem: bytes) -> str:
    return spki_pin(x509.load_pem_x509_certificate(cert_pem))


def pin_of_der(cert_der: bytes) -> str:
    return spki_pin(x509.load_der_x509_certificate(cert_der))


def write_tls(folder: Path, hostname: str, now: datetime.datetime) -> str:
    """Create ``folder/cert.pem`` and ``folder/key.pem`` (0600); returns the pin."""
    cert_pem, key_pem = make_certificate(hostname, now)
    atomic_write(folder, KEY_FILE, key_pem)
    atomic_write(folder, CERT_FILE, cert_pem)
    return pin_of_pem(cert_pem)
