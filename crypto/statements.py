"""Signed key statements and the chains that carry trust from one key to the next.

Modelled on TUF's root rotation: a device pins HQ's root key at enrolment, and
afterwards accepts a new HQ box or protection key, or a new root key, only through
a chain of statements, each exactly one version newer than the last and signed by
the key trusted at that point (a root rotation also by the new root). A device key
rotation is the same idea with the device's own key. Everything here is a pure
function: bytes and ``now`` in, a new immutable trust state or ``StatementError``
out. The byte layout and the rules are specified in ``docs/statements.md``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum
from itertools import pairwise
from typing import ClassVar, Final, TypeGuard

from crypto.errors import InvalidKey, StatementError, StatementReason
from crypto.keys import (
    KEY_ID_BYTES,
    SIGNATURE_BYTES,
    BoxPublicKey,
    DeviceSigningKey,
    DeviceVerifyKey,
    ProtectionPublicKey,
    RootSigningKey,
    RootVerifyKey,
    SignPurpose,
)

MAGIC: Final = b"FASTMT"
FORMAT_VERSION: Final = 1
MAX_STATEMENT_BYTES: Final = 1024  # checked before anything else; the largest is 249
MAX_SIGNATURES: Final = 2  # no kind needs more signers
MAX_CHAIN_LENGTH: Final = 4096  # years of monthly rotations; bounds the work per call
MAX_INT: Final = 2**63 - 1  # versions and times fit a signed 64-bit column

_HEADER = struct.Struct(">6sBB")  # magic, format version, kind
_SIGNATURE = struct.Struct(f">{KEY_ID_BYTES}s{SIGNATURE_BYTES}s")  # signer key id, signature
_HQ_KEYS = struct.Struct(">QQQ32s16s32s16s")  # version, issued, expires, box, id, prot, id
_ROOT_ROTATION = struct.Struct(">QQQ32s")  # version, issued, expires, new root
_DEVICE_ROTATION = struct.Struct(">QQ32s32s")  # version, issued, old device, new device

_HQ_MESSAGE = (
    "An HQ key statement was refused ({reason}); this device keeps the HQ keys it "
    "already trusts. Sync again later, and tell HQ if this keeps happening."
)
_DEVICE_MESSAGE = (
    "A device key rotation was refused ({reason}); the device's previous key stays "
    "trusted. Ask the monitor to send the rotation again, or re-enrol the device."
)


class StatementKind(IntEnum):
    """The kind byte of a statement; part of the signed bytes."""

    HQ_KEYS = 1
    ROOT_ROTATION = 2
    DEVICE_ROTATION = 3


_FIELDS: Final = {
    StatementKind.HQ_KEYS: _HQ_KEYS,
    StatementKind.ROOT_ROTATION: _ROOT_ROTATION,
    StatementKind.DEVICE_ROTATION: _DEVICE_ROTATION,
}


@dataclass(frozen=True, slots=True)
class SignatureEntry:
    """One signature: the signer's key id and its Ed25519 signature of the body."""

    key_id: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class HqKeysStatement:
    """HQ's current box and protection keys, signed by the root. Parsed, not trusted."""

    kind: ClassVar[StatementKind] = StatementKind.HQ_KEYS
    purpose: ClassVar[SignPurpose] = SignPurpose.HQ_KEYS
    version: int
    issued_at: int
    expires_at: int
    box: BoxPublicKey
    protection: ProtectionPublicKey
    body: bytes  # header and fields; signatures cover signed_bytes(purpose, body)
    signatures: tuple[SignatureEntry, ...]


@dataclass(frozen=True, slots=True)
class RootRotationStatement:
    """A new HQ root key, signed by the old and the new root. Parsed, not trusted."""

    kind: ClassVar[StatementKind] = StatementKind.ROOT_ROTATION
    purpose: ClassVar[SignPurpose] = SignPurpose.ROOT_ROTATION
    version: int
    issued_at: int
    expires_at: int
    new_root: RootVerifyKey
    body: bytes
    signatures: tuple[SignatureEntry, ...]


@dataclass(frozen=True, slots=True)
class DeviceRotationStatement:
    """A device's new signing key, signed by the old and the new key. Parsed, not trusted."""

    kind: ClassVar[StatementKind] = StatementKind.DEVICE_ROTATION
    purpose: ClassVar[SignPurpose] = SignPurpose.DEVICE_ROTATION
    version: int
    issued_at: int
    old_device: DeviceVerifyKey
    new_device: DeviceVerifyKey
    body: bytes
    signatures: tuple[SignatureEntry, ...]


Statement = HqKeysStatement | RootRotationStatement | DeviceRotationStatement


def _malformed(message: str | None = None) -> StatementError:
    return StatementError(StatementReason.MALFORMED, message)


def _refuse(reason: StatementReason, message: str) -> StatementError:
    return StatementError(reason, message.format(reason=reason.value))


def _is_uint(value: object, *, minimum: int = 0) -> TypeGuard[int]:
    # bool is an int subclass: True must not pass as version 1.
    return type(value) is int and minimum <= value <= MAX_INT


# --- encoding and signing ------------------------------------------------------------


def _body(kind: StatementKind, *fields: object) -> bytes:
    return _HEADER.pack(MAGIC, FORMAT_VERSION, kind) + _FIELDS[kind].pack(*fields)


def _assemble(body: bytes, entries: Sequence[SignatureEntry]) -> bytes:
    # Entries sorted by key id and unique, so one content has exactly one encoding.
    unique = {e.key_id: e for e in entries}
    ordered = [unique[k] for k in sorted(unique)]
    return (
        body
        + bytes([len(ordered)])
        + b"".join(_SIGNATURE.pack(e.key_id, e.signature) for e in ordered)
    )


def _check_times(version: object, issued_at: object, expires_at: object = None) -> None:
    if not _is_uint(version, minimum=1):
        raise _malformed("A statement version must be an integer from 1 to 2^63-1.")
    if not _is_uint(issued_at):
        raise _malformed("issued_at must be an integer number of seconds, 0 to 2^63-1.")
    if expires_at is not None and not (_is_uint(expires_at) and expires_at > issued_at):
        raise _malformed("expires_at must be an integer later than issued_at.")


def sign_hq_keys(
    root: RootSigningKey,
    *,
    version: int,
    box: BoxPublicKey,
    protection: ProtectionPublicKey,
    issued_at: int,
    expires_at: int,
) -> bytes:
    """An HQ-keys statement naming ``box`` and ``protection``, signed by ``root``.

    Raises:
        StatementError: MALFORMED if a version or time is out of range, if
            ``expires_at <= issued_at``, or if the box and protection keys are equal.
    """
    _check_times(version, issued_at, expires_at)
    if not isinstance(box, BoxPublicKey) or not isinstance(protection, ProtectionPublicKey):
        raise _malformed("An HQ-keys statement needs a box key and a protection key.")
    if box.raw == protection.raw:
        raise _malformed("The HQ box key and protection key must be different keys.")
    body = _body(
        StatementKind.HQ_KEYS,
        version,
        issued_at,
        expires_at,
        box.raw,
        box.key_id,
        protection.raw,
        protection.key_id,
    )
    entry = SignatureEntry(root.public_key.key_id, root.sign(SignPurpose.HQ_KEYS, body))
    return _assemble(body, [entry])


def sign_root_rotation(
    old: RootSigningKey, new: RootSigningKey, *, version: int, issued_at: int, expires_at: int
) -> bytes:
    """A root rotation from ``old`` to ``new``, signed by both.

    ``old == new`` makes a root refresh (same key, new expiry) with one signature.

    Raises:
        StatementError: MALFORMED if a version or time is out of range or
            ``expires_at <= issued_at``.
    """
    _check_times(version, issued_at, expires_at)
    body = _body(StatementKind.ROOT_ROTATION, version, issued_at, expires_at, new.public_key.raw)
    entries = [
        SignatureEntry(k.public_key.key_id, k.sign(SignPurpose.ROOT_ROTATION, body))
        for k in (old, new)
    ]
    return _assemble(body, entries)


def sign_device_rotation(
    old: DeviceSigningKey, new: DeviceSigningKey, *, version: int, issued_at: int
) -> bytes:
    """A device key rotation from ``old`` to ``new``, signed by both.

    Raises:
        StatementError: MALFORMED if a version or time is out of range or the two
            keys are the same.
    """
    _check_times(version, issued_at)
    old_public, new_public = old.public_key, new.public_key
    if old_public == new_public:
        raise _malformed("A device key rotation needs a new key different from the old one.")
    body = _body(StatementKind.DEVICE_ROTATION, version, issued_at, old_public.raw, new_public.raw)
    entries = [
        SignatureEntry(k.public_key.key_id, k.sign(SignPurpose.DEVICE_ROTATION, body))
        for k in (old, new)
    ]
    return _assemble(body, entries)


# --- parsing -----------------------------------------------------------------------


def parse_statement(data: bytes) -> Statement:
    """Parse a statement strictly. The result is NOT trusted: verify it in a chain.

    Raises:
        StatementError: MALFORMED for anything but the exact layout of
            ``docs/statements.md``: wrong size, magic, format version or kind,
            out-of-range integers, invalid or weak public keys, a key id that does
            not match its key, or signature entries that are unsorted or repeated.
    """
    if not isinstance(data, bytes) or len(data) > MAX_STATEMENT_BYTES:
        raise _malformed()
    if len(data) < _HEADER.size:
        raise _malformed()
    magic, format_version, kind_byte = _HEADER.unpack_from(data)
    if magic != MAGIC or format_version != FORMAT_VERSION:
        raise _malformed()
    try:
        kind = StatementKind(kind_byte)
    except ValueError as e:
        raise _malformed() from e
    body_length = _HEADER.size + _FIELDS[kind].size
    if len(data) <= body_length:
        raise _malformed()
    count = data[body_length]
    if count > MAX_SIGNATURES or len(data) != body_length + 1 + count * _SIGNATURE.size:
        raise _malformed()
    body = data[:body_length]
    signatures = tuple(
        SignatureEntry(*_SIGNATURE.unpack_from(data, body_length + 1 + i * _SIGNATURE.size))
        for i in range(count)
    )
    key_ids = [s.key_id for s in signatures]
    if any(a >= b for a, b in pairwise(key_ids)):
        raise _malformed()  # unsorted, or the same signer twice
    try:
        return _parse_fields(kind, body, signatures)
    except InvalidKey as e:
        raise _malformed() from e


def _parse_fields(
    kind: StatementKind, body: bytes, signatures: tuple[SignatureEntry, ...]
) -> Statement:
    fields = _FIELDS[kind].unpack_from(body, _HEADER.size)
    if kind is StatementKind.HQ_KEYS:
        version, issued_at, expires_at, box_raw, box_id, prot_raw, prot_id = fields
        _check_times(version, issued_at, expires_at)
        box, protection = BoxPublicKey(box_raw), ProtectionPublicKey(prot_raw)
        if box.key_id != box_id or protection.key_id != prot_id or box_raw == prot_raw:
            raise _malformed()
        return HqKeysStatement(
            version=version,
            issued_at=issued_at,
            expires_at=expires_at,
            box=box,
            protection=protection,
            body=body,
            signatures=signatures,
        )
    if kind is StatementKind.ROOT_ROTATION:
        version, issued_at, expires_at, root_raw = fields
        _check_times(version, issued_at, expires_at)
        return RootRotationStatement(
            version=version,
            issued_at=issued_at,
            expires_at=expires_at,
            new_root=RootVerifyKey(root_raw),
            body=body,
            signatures=signatures,
        )
    version, issued_at, old_raw, new_raw = fields
    _check_times(version, issued_at)
    if old_raw == new_raw:
        raise _malformed()
    return DeviceRotationStatement(
        version=version,
        issued_at=issued_at,
        old_device=DeviceVerifyKey(old_raw),
        new_device=DeviceVerifyKey(new_raw),
        body=body,
        signatures=signatures,
    )


# --- trust states and chains ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HqTrust:
    """What a device trusts about HQ. Immutable: verifying a chain returns a new one.

    ``expires_at`` is the expiry of the latest HQ-keys statement (the box and
    protection keys); ``root_expires_at`` that of the latest root rotation, or
    None while the root pinned at enrolment is still the root.
    """

    root: RootVerifyKey
    version: int
    box: BoxPublicKey | None
    protection: ProtectionPublicKey | None
    expires_at: int | None
    root_expires_at: int | None = None

    def __post_init__(self) -> None:
        # Box key, protection key and their expiry come from one statement: all or none.
        has_keys = (self.box is not None, self.protection is not None, self.expires_at is not None)
        if (
            not isinstance(self.root, RootVerifyKey)
            or not _is_uint(self.version)
            or (any(has_keys) and not all(has_keys))
            or not (self.box is None or isinstance(self.box, BoxPublicKey))
            or not (self.protection is None or isinstance(self.protection, ProtectionPublicKey))
            or not (self.expires_at is None or _is_uint(self.expires_at))
            or not (self.root_expires_at is None or _is_uint(self.root_expires_at))
        ):
            raise _malformed("The saved HQ trust state is inconsistent.")

    @classmethod
    def anchor(cls, root: RootVerifyKey, version: int = 0) -> HqTrust:
        """The state right after pinning ``root`` at enrolment, with no HQ keys yet.

        ``version`` is the chain version at which ``root`` became HQ's root: 0 for
        the root HQ was created with, the version of the root rotation that
        introduced it otherwise. The chain a device follows then starts at
        ``version + 1``.
        """
        return cls(root=root, version=version, box=None, protection=None, expires_at=None)

    def is_expired(self, now: int) -> bool:
        """True if the latest HQ-keys statement or root rotation has expired at ``now``."""
        return any(t is not None and t <= now for t in (self.expires_at, self.root_expires_at))


@dataclass(frozen=True, slots=True)
class DeviceTrust:
    """The device key HQ (or the device itself) currently trusts, and its version."""

    device: DeviceVerifyKey
    version: int

    def __post_init__(self) -> None:
        if not isinstance(self.device, DeviceVerifyKey) or not _is_uint(self.version):
            raise _malformed("The saved device trust state is inconsistent.")

    @classmethod
    def anchor(cls, device: DeviceVerifyKey) -> DeviceTrust:
        """The state right after enrolling ``device``: version 0."""
        return cls(device=device, version=0)


def _check_now(now: int) -> None:
    if type(now) is not int:
        raise TypeError("now must be an int of unix seconds")


def _check_version(current: int, proposed: int, message: str) -> None:
    if proposed <= current:
        raise _refuse(StatementReason.REPLAYED, message)
    if proposed != current + 1:
        raise _refuse(StatementReason.SKIPPED_VERSION, message)


def _check_signatures(
    statement: Statement, signers: Sequence[RootVerifyKey | DeviceVerifyKey], message: str
) -> None:
    required = {key.key_id: key for key in signers}
    present = {entry.key_id: entry for entry in statement.signatures}
    if any(key_id not in required for key_id in present):
        # A signer we did not ask for: the statement was made for some other trust state.
        raise _refuse(StatementReason.BAD_SIGNATURE, message)
    for key_id, key in required.items():
        entry = present.get(key_id)
        if entry is None:
            raise _refuse(StatementReason.MISSING_SIGNATURE, message)
        if not key.verify(statement.purpose, statement.body, entry.signature):
            raise _refuse(StatementReason.BAD_SIGNATURE, message)


def _parse_in_chain(statements: Sequence[bytes], message: str) -> Iterator[Statement]:
    # Lazily, so the reason reported is that of the first statement that fails.
    if len(statements) > MAX_CHAIN_LENGTH:
        raise _refuse(StatementReason.MALFORMED, message)
    for data in statements:
        try:
            statement = parse_statement(data)
        except StatementError as e:
            raise _refuse(e.reason, message) from e
        yield statement


def verify_hq_chain(trust: HqTrust, statements: Sequence[bytes], now: int) -> HqTrust:
    """Apply HQ-keys and root-rotation statements, in order, to ``trust``.

    Each statement must be version ``current + 1`` and signed by the root trusted
    at that point; a root rotation also by its new root. Statements along the way
    may have expired; the resulting state may not. An empty chain checks that
    ``trust`` itself has not expired.

    Returns:
        The new trust state. ``trust`` itself is immutable and never changes.

    Raises:
        StatementError: on any refusal, with ``reason`` MALFORMED, WRONG_KIND,
            REPLAYED, SKIPPED_VERSION, MISSING_SIGNATURE, BAD_SIGNATURE or EXPIRED.
        TypeError: if ``now`` is not an int.
    """
    _check_now(now)
    state = trust
    for statement in _parse_in_chain(statements, _HQ_MESSAGE):
        if isinstance(statement, HqKeysStatement):
            _check_version(state.version, statement.version, _HQ_MESSAGE)
            _check_signatures(statement, [state.root], _HQ_MESSAGE)
            state = replace(
                state,
                version=statement.version,
                box=statement.box,
                protection=statement.protection,
                expires_at=statement.expires_at,
            )
        elif isinstance(statement, RootRotationStatement):
            _check_version(state.version, statement.version, _HQ_MESSAGE)
            _check_signatures(statement, [state.root, statement.new_root], _HQ_MESSAGE)
            state = replace(
                state,
                root=statement.new_root,
                version=statement.version,
                root_expires_at=statement.expires_at,
            )
        else:
            raise _refuse(StatementReason.WRONG_KIND, _HQ_MESSAGE)
    if state.is_expired(now):
        raise _refuse(StatementReason.EXPIRED, _HQ_MESSAGE)
    return state


def verify_device_chain(trust: DeviceTrust, statements: Sequence[bytes], now: int) -> DeviceTrust:
    """Apply device rotation statements, in order, to ``trust``.

    Each statement must be version ``current + 1``, name the currently trusted key
    as its old key, and be signed by the old and the new key. ``issued_at`` is a
    record of the device's clock and is not checked against ``now``: field clocks
    are often wrong, and refusing would strand the device's new key (see
    ``docs/statements.md``).

    Returns:
        The new trust state. ``trust`` itself is immutable and never changes.

    Raises:
        StatementError: on any refusal, with ``reason`` MALFORMED, WRONG_KIND,
            REPLAYED, SKIPPED_VERSION, WRONG_SUBJECT, MISSING_SIGNATURE or
            BAD_SIGNATURE.
        TypeError: if ``now`` is not an int.
    """
    _check_now(now)
    state = trust
    for statement in _parse_in_chain(statements, _DEVICE_MESSAGE):
        if not isinstance(statement, DeviceRotationStatement):
            raise _refuse(StatementReason.WRONG_KIND, _DEVICE_MESSAGE)
        _check_version(state.version, statement.version, _DEVICE_MESSAGE)
        if statement.old_device != state.device:
            raise _refuse(StatementReason.WRONG_SUBJECT, _DEVICE_MESSAGE)
        _check_signatures(statement, [statement.old_device, statement.new_device], _DEVICE_MESSAGE)
        state = DeviceTrust(device=statement.new_device, version=statement.version)
    return state


def root_anchor(chain: Sequence[bytes]) -> int:
    """The version at which the chain's last root took over: an enrolment's anchor.

    ``chain`` is a whole HQ chain from version 1 (HQ's own, already verified).
    The answer is the version of the last root rotation that changed the root, or
    0 if the root was never rotated; ``chain[anchor:]`` is then what a device
    anchored at the current root still needs (docs/enrolment.md).

    Raises:
        StatementError: MALFORMED if a statement does not parse or is not at its
            place in the chain.
    """
    anchor = 0
    for position, statement in enumerate(_parse_in_chain(chain, _HQ_MESSAGE), start=1):
        if statement.version != position:
            raise _malformed("The HQ chain is not numbered from version 1.")
        # Two signers, old and new root, is a rotation; one is a refresh of the same root.
        if isinstance(statement, RootRotationStatement) and len(statement.signatures) == 2:
            anchor = position
    return anchor
