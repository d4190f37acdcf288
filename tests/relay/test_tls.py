"""``relay init --tls`` and ``relay serve --tls``: a verifiable certificate and its pin."""

from __future__ import annotations

import hashlib
import socket
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.relay.helpers import upload
from tests.relay.server import running_relay, tls_context


def _served_certificate(host: str, port: int) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # we only want to look at what is served
    with socket.create_connection((host, port)) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_tls_relay_with_pin(tmp_path: Path) -> None:
    with running_relay(tmp_path, tls=True, hostname="relay.example.org") as relay:
        assert relay.pin is not None
        served = x509.load_der_x509_certificate(_served_certificate(relay.host, relay.port))
        spki = served.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        assert hashlib.sha256(spki).hexdigest() == relay.pin
        names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert names.get_values_for_type(x509.DNSName) == ["relay.example.org"]
        assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
        # Verified against the generated certificate (strict X.509 checks on), by IP...
        with relay.client(relay.upload_token) as http:
            assert relay.url.startswith("https://127.0.0.1:")
            assert http.get("/v1/health").json()["status"] == "ok"
            data_id = upload(http, b"over tls")
        # ...and by the hostname in the certificate.
        context = tls_context(relay.cert)
        with (
            socket.create_connection((relay.host, relay.port)) as raw,
            context.wrap_socket(raw, server_hostname="relay.example.org") as tls,
        ):
            assert tls.version() in {"TLSv1.2", "TLSv1.3"}
        with relay.client(relay.hq_token) as hq:
            assert hq.get(f"/v1/blobs/{data_id}").content == b"over tls"
        # A client trusting only the system's CAs refuses it.
        with pytest.raises(httpx.ConnectError), httpx.Client(verify=True) as stranger:
            stranger.get(f"{relay.url}/v1/health")
        # Plain HTTP on the TLS port gets nowhere.
        with pytest.raises(httpx.HTTPError), httpx.Client() as plain:
            plain.get(f"http://{relay.host}:{relay.port}/v1/health")
    key = relay.data_dir / "tls" / "key.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    assert (relay.data_dir / "tls").stat().st_mode & 0o777 == 0o700
