"""A client for the relay (docs/relay-protocol.md): typed calls, pinned TLS, SOCKS5, retries.

Every failure surfaces as one ``RelayError`` subclass with a one-line message
and ``ExitCode.NETWORK``: the relay cannot be reached (``RelayUnreachable``),
its certificate does not match the pin (``RelayPinMismatch``), it refused the
token (``RelayTokenRefused``), it is full (``RelayFull``), a blob is too large
for it (``RelayTooLarge``), or it answered something the protocol does not
allow (``RelayProtocolError``). Messages name the relay by scheme, host and
port only: never a token, a user name or password in a URL, a path or anything
the relay sent back.

**Pinning.** With a pin (hex SHA-256 of the relay certificate's DER
SubjectPublicKeyInfo) the client first asks ``GET /v1/health`` *without any
token*, over a TLS connection that verifies nothing, reads the certificate the
relay presented, and compares its SPKI hash with the pin in constant time. On
a mismatch nothing else is sent. On a match every later connection uses a TLS
context that trusts exactly that certificate (and no CA), so a certificate
swapped after the check is refused by the handshake. The certificate's
validity dates are not checked: the pin is the trust, and field laptops often
have wrong clocks.

**Proxy.** ``socks5h://HOST:PORT`` (or ``socks5://``, the same here) sends
every connection through a SOCKS5 proxy such as Tor. httpx (httpcore with
socksio) always hands the relay's *host name* to the proxy, which resolves it:
no DNS query leaves this machine, and onion addresses work. Proxy settings
from the environment are ignored (``trust_env=False``): only ``--proxy`` counts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import random
import re
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Final, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from crypto.tokennotice import MAX_NOTICE_BYTES
from fieldapp.errors import ExitCode, FieldappError

if TYPE_CHECKING:
    # httpx is imported where it is used: importing it loads click (httpx's own
    # command line, httpx._main), and sync must not load a UI toolkit just by
    # being imported (tests/test_boundaries.py).
    import httpx

PROTOCOL: Final = 1
RECEIPT_BYTES: Final = 144
MAX_RECEIPTS_PER_ANSWER: Final = 10_000
MAX_STATEMENT_BYTES: Final = 1024
MAX_JSON_BYTES: Final = 4 * 1024 * 1024  # a blob listing of 1000 entries is ~150 KB
MAX_BLOB_BYTES: Final = 4 * 1024**3 + 1024 * 1024
DEFAULT_CHUNK_BYTES: Final = 1024 * 1024
USER_AGENT: Final = "fieldapp"  # the same on every device: says nothing about which one
_NO_CHECK_TIME: Final = 0x200000  # OpenSSL's X509_V_FLAG_NO_CHECK_TIME
_BLOB_ID = re.compile(r"[0-9a-f]{64}")
_PIN = re.compile(r"[0-9a-f]{64}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,256}")
_ERROR_CODE = re.compile(r"[a-z-]{1,40}")

T = TypeVar("T")


# ---------------------------------------------------------------- errors


class RelayError(FieldappError):
    """A relay request failed. ``transient``: trying again later may succeed."""

    exit_code = ExitCode.NETWORK
    transient = False


class RelayUnreachable(RelayError):
    transient = True


class RelayNameNotFound(RelayError):
    """The relay's name did not resolve: not retried (see _transport_error)."""


class RelayPinMismatch(RelayError):
    pass


class RelayCertificateRefused(RelayError):
    pass


class RelayTokenRefused(RelayError):
    pass


class RelayFull(RelayError):
    pass


class RelayTooLarge(RelayError):
    pass


class RelayProtocolError(RelayError):
    pass


class RelayBusy(RelayError):
    """A 5xx, 408 or 429: the relay is there but could not answer now."""

    transient = True


class UploadConflict(RelayProtocolError):
    """409 on a PATCH: the offset moved (an earlier body arrived after all). Ask again."""

    transient = True


class UploadGone(RelayProtocolError):
    """404 on HEAD or PATCH: the relay no longer has this upload (expired). Create it again."""


class HashMismatch(RelayProtocolError):
    """422: the bytes the relay assembled do not hash to the id; it discarded them."""


class RelaySettingError(FieldappError):
    """A relay address, proxy, pin or token that cannot be used as given."""

    exit_code = ExitCode.USAGE


# ---------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds allowed to connect (through Tor: slow), to read or write a block, to get a slot."""

    connect: float = 30.0
    read: float = 60.0
    write: float = 60.0
    pool: float = 30.0


DEFAULT_TIMEOUT: Final = Timeouts()


def check_relay_url(url: str) -> str:
    """``url`` without a trailing slash, if it is an http(s) address we can use.

    A user name or password in it is refused (the relay authenticates with
    bearer tokens; credentials in a URL end up in logs and process lists), as
    are a query or fragment.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise RelaySettingError("The relay address is not a valid URL.") from e
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RelaySettingError(
            "The relay address must be an http:// or https:// URL with a host name."
        )
    if parts.username is not None or parts.password is not None:
        raise RelaySettingError(
            "The relay address must not contain a user name or password; the relay uses tokens."
        )
    if parts.query or parts.fragment or any(c.isspace() for c in url) or len(url) > 2048:
        raise RelaySettingError("The relay address must be a plain URL (no query or fragment).")
    del port
    return url.rstrip("/")


def check_proxy_url(url: str) -> str:
    """A SOCKS5 proxy URL for httpx: ``socks5h://`` or ``socks5://``, host and port."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise RelaySettingError("The proxy is not a valid URL (socks5h://HOST:PORT).") from e
    if parts.scheme not in ("socks5", "socks5h") or not parts.hostname or port is None:
        raise RelaySettingError(
            "The proxy must be a SOCKS5 address with a port: socks5h://HOST:PORT "
            "(Tor's is socks5h://127.0.0.1:9050)."
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise RelaySettingError("The proxy must be socks5h://HOST:PORT, with nothing after it.")
    # httpcore sends the host name to a SOCKS5 proxy whatever the scheme: socks5 and
    # socks5h behave alike (remote DNS); socks5:// is the spelling every httpx accepts.
    return urllib.parse.urlunsplit(("socks5", parts.netloc, "", "", ""))


def check_pin(pin: str) -> str:
    """A pin as 64 lowercase hex digits; colons and upper case are accepted on input."""
    cleaned = pin.strip().replace(":", "").lower()
    if not _PIN.fullmatch(cleaned):
        raise RelaySettingError(
            "The pin must be the SHA-256 of the relay certificate's public key: 64 hex digits "
            "(fieldapp relay init prints it)."
        )
    return cleaned


def check_token(token: str, what: str) -> str:
    if not _TOKEN.fullmatch(token):
        raise RelaySettingError(
            f"The {what} must be 16 to 256 characters from A-Z a-z 0-9 _ - "
            "(fieldapp relay init prints it)."
        )
    return token


def describe(url: str) -> str:
    """The relay as messages name it: scheme, host and port, nothing else."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def spki_sha256(der_certificate: bytes) -> str:
    """The pin of a certificate: hex SHA-256 of its DER SubjectPublicKeyInfo."""
    certificate = x509.load_der_x509_certificate(der_certificate)
    spki = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def pinned_context(der_certificate: bytes) -> ssl.SSLContext:
    """A TLS context that trusts exactly this certificate: no CA, no host name, no dates."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=der_certificate)
    # The certificate itself is the anchor (a leaf, not a CA); its dates are not
    # checked, the pin being the trust and field clocks often being wrong.
    context.verify_flags = ssl.VerifyFlags(
        context.verify_flags | ssl.VERIFY_X509_PARTIAL_CHAIN | _NO_CHECK_TIME
    )
    return context


def _probe_context() -> ssl.SSLContext:
    """TLS that verifies nothing: only to read the certificate before any token is sent."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# ---------------------------------------------------------------- retries


@dataclass
class Backoff:
    """Retrying transient failures: exponential backoff with full jitter, within a budget.

    Each wait is uniform in ``[0, min(max_delay, base_delay * 2**attempt)]``. The
    budget is time *without progress*: ``progressed()`` (the relay acknowledged
    something) starts it again, so a slow transfer that keeps moving is never
    cut off, while a relay that stays unreachable is given up on after
    ``budget_seconds``. Sleep, clock and randomness are injectable for tests.
    """

    budget_seconds: float = 600.0
    base_delay: float = 0.5
    max_delay: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    random: Callable[[], float] = field(default_factory=lambda: random.SystemRandom().random)
    attempt: int = 0
    retries: int = 0
    _deadline: float | None = None

    def start(self) -> float:
        """Start the budget afresh; returns the new deadline."""
        self.attempt = 0
        self._deadline = self.monotonic() + self.budget_seconds
        return self._deadline

    def progressed(self) -> None:
        self.start()

    def wait_or_raise(self, error: RelayError) -> None:
        """Sleep before the next try, or raise ``error`` if it is final or time is up."""
        if not error.transient:
            raise error
        deadline = self.start() if self._deadline is None else self._deadline
        delay = self.random() * min(self.max_delay, self.base_delay * 2**self.attempt)
        if self.monotonic() + delay > deadline:
            raise type(error)(
                f"{error.message.rstrip('.')}; gave up after {self.retries + 1} tries "
                f"within {self.budget_seconds:g} s."
            ) from error
        self.attempt += 1
        self.retries += 1
        self.sleep(delay)

    def call(self, action: Callable[[], T], *, progress: bool = True) -> T:
        """``action()``, tried again after each transient RelayError while the budget lasts.

        Its success counts as progress unless ``progress`` is false (asking where
        an upload stands moves nothing forward).
        """
        while True:
            try:
                result = action()
            except RelayError as e:
                self.wait_or_raise(e)
            else:
                if progress:
                    self.progressed()
                return result


# ---------------------------------------------------------------- answers


@dataclass(frozen=True, slots=True)
class UploadState:
    offset: int
    length: int

    @property
    def complete(self) -> bool:
        return self.offset >= self.length


@dataclass(frozen=True, slots=True)
class BlobInfo:
    id: str
    size: int
    stored_at: str


@dataclass(frozen=True, slots=True)
class ReceiptsPage:
    receipts: tuple[bytes, ...]
    cursor: int
    more: bool


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: httpx.Headers
    body: bytes


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    """True if ``kind`` is anywhere in the chain of causes of ``error``."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, kind):
            return True
        current = current.__cause__ or current.__context__
    return False


# ---------------------------------------------------------------- the client


class RelayClient:
    """One relay, one token. Use as a context manager; not shared between threads.

    Each method is one request; none retries by itself (see ``Backoff``).
    ``bytes_sent`` counts upload body bytes handed to the network, failed tries
    included (what resuming costs).
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        pin: str | None = None,
        proxy: str | None = None,
        timeout: Timeouts = DEFAULT_TIMEOUT,
    ) -> None:
        self.url = check_relay_url(url)
        self._token = token
        self.pin = None if pin is None else check_pin(pin)
        self.proxy = None if proxy is None else check_proxy_url(proxy)
        host = (urllib.parse.urlsplit(self.url).hostname or "").lower()
        if host.endswith(".onion") and self.proxy is None:
            # Without Tor the name would go to the local resolver: a leak, and no route.
            raise RelaySettingError(
                "The relay is a Tor onion service: send through Tor with "
                "--proxy socks5h://127.0.0.1:9050, or set it once with "
                "fieldapp sync settings --proxy socks5h://127.0.0.1:9050."
            )
        self._timeout = timeout
        self._client: httpx.Client | None = None
        self.name = describe(self.url)
        self.bytes_sent = 0
        if self.pin is not None and not self.url.startswith("https://"):
            raise RelaySettingError(
                f"This device pins the relay's TLS certificate, but {self.name} is not an "
                "https:// address; use the relay's https:// address."
            )

    def __repr__(self) -> str:
        return f"RelayClient({self.name!r}, pinned={self.pin is not None})"

    def __enter__(self) -> RelayClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def use_token(self, token: str) -> None:
        """Send ``token`` from the next request on (a new upload token picked up mid-push)."""
        self._token = check_token(token, "upload token")
        self.close()

    # ------------------------------------------------------------ connecting

    def _new_client(self, verify: ssl.SSLContext | bool, *, authorised: bool) -> httpx.Client:
        import httpx  # noqa: PLC0415 -- see the note at the imports

        headers = {"User-Agent": USER_AGENT}
        if authorised:
            headers["Authorization"] = f"Bearer {self._token}"
        return httpx.Client(
            verify=verify,
            proxy=self.proxy,
            timeout=httpx.Timeout(
                connect=self._timeout.connect,
                read=self._timeout.read,
                write=self._timeout.write,
                pool=self._timeout.pool,
            ),
            trust_env=False,
            follow_redirects=False,
            headers=headers,
        )

    def _connected(self) -> httpx.Client:
        if self._client is None:
            verify: ssl.SSLContext | bool = True
            if self.pin is not None:
                verify = pinned_context(self._check_pin(self.pin))
            self._client = self._new_client(verify, authorised=True)
        return self._client

    def _check_pin(self, pin: str) -> bytes:
        """Connect without a token, compare the certificate's SPKI with ``pin``; its DER."""
        with (
            self._new_client(_probe_context(), authorised=False) as probe,
            self._mapped("checking its certificate"),
            probe.stream("GET", self._path("/v1/health")) as response,
        ):
            stream = response.extensions.get("network_stream")
            ssl_object = None if stream is None else stream.get_extra_info("ssl_object")
            # httpcore hands out the _ssl object, whose getpeercert takes der positionally.
            der = None if ssl_object is None else ssl_object.getpeercert(True)  # noqa: FBT003
            if not isinstance(der, bytes):
                raise RelayProtocolError(
                    f"The relay at {self.name} presented no TLS certificate to check against "
                    "the pin; nothing was sent."
                )
            try:
                found = spki_sha256(der)
            except ValueError as e:
                raise RelayPinMismatch(self._pin_message()) from e
            if not hmac.compare_digest(found.encode(), pin.encode()):
                raise RelayPinMismatch(self._pin_message())
            return der

    def _pin_message(self) -> str:
        return (
            f"TLS pin mismatch: the relay at {self.name} presented a certificate that is not "
            "the one HQ pinned. Nothing was sent (no token). Someone may be intercepting the "
            "connection; tell HQ by another channel."
        )

    def _path(self, path: str) -> str:
        return self.url + path

    @contextmanager
    def _mapped(self, what: str) -> Iterator[None]:
        """Turn httpx's exceptions into one RelayError each, saying nothing secret."""
        import httpx  # noqa: PLC0415 -- see the note at the imports

        try:
            yield
        except httpx.TransportError as e:
            raise self._transport_error(e, what) from None
        except httpx.DecodingError as e:
            raise RelayProtocolError(
                f"The relay at {self.name} sent an answer that cannot be decoded while {what}."
            ) from e
        except httpx.InvalidURL as e:
            raise RelaySettingError("The relay address is not a valid URL.") from e

    def _transport_error(self, error: httpx.TransportError, what: str) -> RelayError:
        import httpx  # noqa: PLC0415 -- see the note at the imports

        if _caused_by(error, ssl.SSLCertVerificationError):
            if self.pin is not None:
                return RelayPinMismatch(self._pin_message())
            return RelayCertificateRefused(
                f"The relay at {self.name} presented a TLS certificate this machine does not "
                "trust; nothing was sent. If HQ gave you a pin, enrol with it."
            )
        if isinstance(error, httpx.UnsupportedProtocol):
            return RelayProtocolError(f"The relay address {self.name} cannot be used.")
        via = " through the proxy" if self.proxy else ""
        if isinstance(error, httpx.ProxyError):
            return RelayUnreachable(
                f"The proxy could not connect to the relay at {self.name} while {what} "
                "(is Tor connected?)."
            )
        if isinstance(error, httpx.ConnectError) and self.proxy:
            proxy = describe(self.proxy).replace("socks5://", "")
            return RelayUnreachable(
                f"The SOCKS proxy at {proxy} cannot be reached while {what} (is Tor running?)."
            )
        if isinstance(error, httpx.TimeoutException):
            return RelayUnreachable(f"The relay at {self.name} timed out{via} while {what}.")
        if isinstance(error, httpx.ConnectError) and _caused_by(error, socket.gaierror):
            # Final, not retried: asking the resolver again and again for the relay's
            # name is a signal to whoever watches the network, for nothing.
            return RelayNameNotFound(
                f"The relay at {self.name} cannot be reached: its name was not found "
                "(no network, or a mistyped address)."
            )
        if isinstance(error, httpx.ConnectError):
            return RelayUnreachable(f"The relay at {self.name} cannot be reached{via}.")
        return RelayUnreachable(f"The connection to the relay at {self.name} broke while {what}.")

    def _request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        expected: tuple[int, ...],
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        limit: int = MAX_JSON_BYTES,
        allow: tuple[int, ...] = (),
    ) -> _Answer:
        client = self._connected()
        with (
            self._mapped(what),
            client.stream(method, self._path(path), headers=headers, content=content) as r,
        ):
            if r.status_code in expected or r.status_code in allow:
                body = bytearray()
                for block in r.iter_bytes():
                    body += block
                    if len(body) > limit:
                        raise RelayProtocolError(
                            f"The relay at {self.name} sent a longer answer than the protocol "
                            f"allows while {what}."
                        )
                return _Answer(r.status_code, r.headers, bytes(body))
            raise self._status_error(r, what)

    def _status_error(self, r: httpx.Response, what: str) -> RelayError:
        import httpx  # noqa: PLC0415 -- see the note at the imports

        status = r.status_code
        if status == 401:
            return RelayTokenRefused(
                f"The relay at {self.name} refused the token while {what}: the token is wrong "
                "or was replaced. Ask HQ for a new enrolment or relay settings."
            )
        if status == 507:
            return RelayFull(
                f"The relay at {self.name} is full while {what}; nothing more can be sent "
                "until HQ collects what it holds. Your testimony stays queued here."
            )
        if status == 413:
            return RelayTooLarge(
                f"The relay at {self.name} refused an upload as too large while {what}; "
                "send it by USB instead (fieldapp sync export)."
            )
        if status >= 500 or status in (408, 429):
            return RelayBusy(f"The relay at {self.name} answered {status} while {what}.")
        code = ""
        if r.headers.get("content-type", "").startswith("application/json"):
            try:
                head = bytearray()
                for block in r.iter_bytes():  # at most 4 KiB of an error: never all of it
                    head += block
                    if len(head) > 4096:
                        break
                value = json.loads(bytes(head)) if len(head) <= 4096 else {}
                candidate = value.get("error") if isinstance(value, dict) else None
                if isinstance(candidate, str) and _ERROR_CODE.fullmatch(candidate):
                    code = f" ({candidate})"
            except (httpx.HTTPError, ValueError, UnicodeDecodeError):
                code = ""
        return RelayProtocolError(
            f"The relay at {self.name} answered {status}{code} while {what}, which the "
            "protocol does not expect here."
        )

    def _json(self, answer: _Answer, what: str) -> dict[str, object]:
        try:
            value = json.loads(answer.body)
        except (ValueError, UnicodeDecodeError) as e:
            raise self._bad_answer(what) from e
        if not isinstance(value, dict):
            raise self._bad_answer(what)
        return value

    def _bad_answer(self, what: str) -> RelayProtocolError:
        return RelayProtocolError(
            f"The relay at {self.name} sent an answer the protocol does not allow while {what}."
        )

    def _int_header(self, answer: _Answer, name: str, what: str) -> int:
        text = answer.headers.get(name, "")
        if not text.isascii() or not text.isdigit() or len(text) > 19:
            raise self._bad_answer(what)
        return int(text)

    # ------------------------------------------------------------ endpoints

    def health(self) -> dict[str, object]:
        """``GET /v1/health``: the relay is there and speaks this protocol."""
        what = "checking it is there"
        value = self._json(self._request("GET", "/v1/health", what, expected=(200,)), what)
        if value.get("protocol") != PROTOCOL:
            raise RelayProtocolError(
                f"The relay at {self.name} speaks another protocol version; HQ must update it "
                "or this device."
            )
        return value

    def create_upload(self, blob_id: str, length: int) -> UploadState:
        """``POST /v1/uploads``: create (or find again) the upload of ``blob_id``."""
        _check_blob_id(blob_id)
        what = "starting an upload"
        metadata = base64.b64encode(blob_id.encode("ascii")).decode("ascii")
        answer = self._request(
            "POST",
            "/v1/uploads",
            what,
            expected=(200, 201),
            allow=(409,),
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Length": str(length),
                "Upload-Metadata": f"sha256 {metadata}",
            },
            content=b"",
        )
        if answer.status == 409:
            raise RelayProtocolError(
                f"The relay at {self.name} holds an upload with this id and another length."
            )
        offset = self._int_header(answer, "Upload-Offset", what)
        if offset > length:
            raise self._bad_answer(what)
        return UploadState(offset, length)

    def upload_offset(self, blob_id: str) -> UploadState:
        """``HEAD /v1/uploads/<id>``: where to go on. Raises UploadGone if unknown."""
        _check_blob_id(blob_id)
        what = "asking where an upload stands"
        answer = self._request(
            "HEAD",
            f"/v1/uploads/{blob_id}",
            what,
            expected=(200,),
            allow=(404,),
            headers={"Tus-Resumable": "1.0.0"},
        )
        if answer.status == 404:
            raise UploadGone(f"The relay at {self.name} no longer has this upload.")
        offset = self._int_header(answer, "Upload-Offset", what)
        length = self._int_header(answer, "Upload-Length", what)
        if offset > length:
            raise self._bad_answer(what)
        return UploadState(offset, length)

    def append(self, blob_id: str, offset: int, data: bytes) -> int:
        """``PATCH /v1/uploads/<id>``: ``data`` at ``offset``; returns the relay's new offset."""
        _check_blob_id(blob_id)
        what = "uploading"
        self.bytes_sent += len(data)
        answer = self._request(
            "PATCH",
            f"/v1/uploads/{blob_id}",
            what,
            expected=(204,),
            allow=(404, 409, 422),
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            },
            content=data,
        )
        if answer.status == 404:
            raise UploadGone(f"The relay at {self.name} no longer has this upload.")
        if answer.status == 409:
            raise UploadConflict(f"The relay at {self.name} holds a different upload offset.")
        if answer.status == 422:
            raise HashMismatch(
                f"The relay at {self.name} received bytes that do not match the bundle's hash."
            )
        new_offset = self._int_header(answer, "Upload-Offset", what)
        if new_offset > offset + len(data) or new_offset < offset:
            raise self._bad_answer(what)
        return new_offset

    def list_blobs(
        self, *, after: str | None = None, limit: int = 1000
    ) -> tuple[list[BlobInfo], bool]:
        """``GET /v1/blobs``: complete blobs with ids above ``after``; are there more."""
        what = "listing bundles"
        query = f"?limit={limit}" + ("" if after is None else f"&after={_check_blob_id(after)}")
        value = self._json(self._request("GET", f"/v1/blobs{query}", what, expected=(200,)), what)
        blobs, more = value.get("blobs"), value.get("more")
        if not isinstance(blobs, list) or not isinstance(more, bool) or len(blobs) > limit:
            raise self._bad_answer(what)
        out = []
        for entry in blobs:
            if not isinstance(entry, dict):
                raise self._bad_answer(what)
            blob_id, size, stored = entry.get("id"), entry.get("size"), entry.get("stored_at")
            if (
                not isinstance(blob_id, str)
                or not _BLOB_ID.fullmatch(blob_id)
                or type(size) is not int
                or not 0 <= size <= MAX_BLOB_BYTES
                or not isinstance(stored, str)
            ):
                raise self._bad_answer(what)
            out.append(BlobInfo(blob_id, size, stored[:64]))
        return out, more

    def download(self, blob_id: str, dst: IO[bytes], *, offset: int = 0, size: int) -> int:
        """``GET /v1/blobs/<id>`` from ``offset`` into ``dst``; returns the bytes written.

        Stops with RelayProtocolError if the relay sends more than ``size`` in all.
        A connection cut part way raises RelayUnreachable after what arrived was written.
        """
        _check_blob_id(blob_id)
        what = "downloading a bundle"
        client = self._connected()
        headers = {"Range": f"bytes={offset}-"} if offset else None
        written = 0
        with (
            self._mapped(what),
            client.stream("GET", self._path(f"/v1/blobs/{blob_id}"), headers=headers) as r,
        ):
            if r.status_code == 404:
                raise UploadGone(f"The relay at {self.name} no longer has this bundle.")
            if r.status_code not in ((206,) if offset else (200,)):
                raise self._status_error(r, what)
            for block in r.iter_raw():
                if offset + written + len(block) > size:
                    raise RelayProtocolError(
                        f"The relay at {self.name} sent a bundle longer than it said."
                    )
                dst.write(block)
                written += len(block)
        return written

    def delete_blob(self, blob_id: str) -> None:
        _check_blob_id(blob_id)
        self._request("DELETE", f"/v1/blobs/{blob_id}", "removing a bundle", expected=(204,))

    def publish_receipts(self, receipts: list[bytes]) -> int:
        """``POST /v1/receipts``: returns how many the relay stored (new ones)."""
        what = "publishing receipts"
        if not receipts or len(receipts) > MAX_RECEIPTS_PER_ANSWER:
            raise ValueError("publish 1 to 10,000 receipts at a time")
        if any(len(r) != RECEIPT_BYTES for r in receipts):
            raise ValueError("a receipt is 144 bytes")
        value = self._json(
            self._request(
                "POST",
                "/v1/receipts",
                what,
                expected=(200,),
                headers={"Content-Type": "application/octet-stream"},
                content=b"".join(receipts),
            ),
            what,
        )
        stored = value.get("stored")
        if type(stored) is not int or stored < 0:
            raise self._bad_answer(what)
        return stored

    def receipts(self, after: int) -> ReceiptsPage:
        """``GET /v1/receipts?after=N``: receipts published after cursor ``after``."""
        what = "fetching receipts"
        answer = self._request(
            "GET",
            f"/v1/receipts?after={int(after)}",
            what,
            expected=(200,),
            limit=RECEIPT_BYTES * MAX_RECEIPTS_PER_ANSWER,
        )
        if len(answer.body) % RECEIPT_BYTES:
            raise self._bad_answer(what)
        cursor = self._int_header(answer, "Receipts-Cursor", what)
        more = answer.headers.get("Receipts-More", "0")
        # A cursor below ``after`` is allowed: a relay restored from backup, or a new
        # one, answers with its own end. The device then reads on from there.
        if more not in ("0", "1"):
            raise self._bad_answer(what)
        body = answer.body
        pieces = tuple(body[i : i + RECEIPT_BYTES] for i in range(0, len(body), RECEIPT_BYTES))
        return ReceiptsPage(pieces, cursor, more == "1")

    def put_statement(self, version: int, statement: bytes) -> None:
        if version < 1 or not 1 <= len(statement) <= MAX_STATEMENT_BYTES:
            raise ValueError("a statement has a version from 1 and 1 to 1024 bytes")
        answer = self._request(
            "PUT",
            f"/v1/statements/{version}",
            "publishing HQ key statements",
            expected=(204,),
            allow=(409,),
            headers={"Content-Type": "application/octet-stream"},
            content=statement,
        )
        if answer.status == 409:
            raise RelayProtocolError(
                f"The relay at {self.name} holds a different HQ key statement {version}; "
                "it may have been tampered with. Check the relay's data folder."
            )

    def statements(self, after: int) -> list[bytes]:
        """``GET /v1/statements?after=N``: HQ statements after version ``after``, in order."""
        what = "fetching HQ key statements"
        value = self._json(
            self._request("GET", f"/v1/statements?after={int(after)}", what, expected=(200,)),
            what,
        )
        items = value.get("statements")
        if not isinstance(items, list) or len(items) > 10_000:
            raise self._bad_answer(what)
        out = []
        for item in items:
            if not isinstance(item, str):
                raise self._bad_answer(what)
            try:
                raw = base64.b64decode(item, validate=True)
            except (binascii.Error, ValueError) as e:
                raise self._bad_answer(what) from e
            if not 1 <= len(raw) <= MAX_STATEMENT_BYTES:
                raise self._bad_answer(what)
            out.append(raw)
        return out

    def put_upload_token(self, token_sha256: str, notice: bytes) -> None:
        """``PUT /v1/upload-token``: make the token with that hash the upload token (HQ)."""
        if not _BLOB_ID.fullmatch(token_sha256) or not 1 <= len(notice) <= MAX_NOTICE_BYTES:
            raise ValueError("a lowercase hex SHA-256 and a notice of at most ~1 MiB")
        body = json.dumps(
            {"token_sha256": token_sha256, "notice": base64.b64encode(notice).decode("ascii")}
        ).encode("ascii")
        answer = self._request(
            "PUT",
            "/v1/upload-token",
            "sending the new upload token",
            expected=(204,),
            allow=(409,),
            headers={"Content-Type": "application/json"},
            content=body,
        )
        if answer.status == 409:
            raise RelayProtocolError(
                f"The relay at {self.name} holds a newer notice of the upload token, or "
                "refused this token; nothing was changed there. Check the relay's data folder."
            )

    def upload_token_notice(self) -> bytes | None:
        """``GET /v1/upload-token``: HQ's latest notice, or None if there is none."""
        what = "fetching the upload-token notice"
        answer = self._request(
            "GET",
            "/v1/upload-token",
            what,
            expected=(200,),
            allow=(404,),
            limit=MAX_NOTICE_BYTES,
        )
        if answer.status == 404:
            return None
        if not answer.body:
            raise self._bad_answer(what)
        return answer.body


def _check_blob_id(blob_id: str) -> str:
    if not _BLOB_ID.fullmatch(blob_id):
        raise ValueError("a blob id is 64 lowercase hex digits")
    return blob_id
