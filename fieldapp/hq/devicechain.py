"""Which enrolled device a bundle speaks for, and the device keys it proves.

HQ keeps, per enrolment identity (a ``devices`` row), every key the device has
signed with (``device_keys``: version 0 bound at enrolment, then one per
rotation). A bundle names its identity in the manifest; ``judge`` decides,
read-only and inside the caller's transaction, whether its signing key belongs
to that identity, possibly through the device rotation statements it carries
(docs/statements.md, "Device chain"):

1. the identity must exist, and **revocation is checked first**: a revoked
   device's bundles are refused without verifying anything it presents;
2. every statement must parse and be a device rotation;
3. an identity with no key yet (its first bundle) needs the enrolment proof for
   the signing key; its chain, if any, starts at version 1 from the statement's
   own old key;
4. otherwise the statements newer than the key HQ trusts for the identity must
   verify as a chain from it (``verify_device_chain``);
5. the signing key must then be a key of the identity, and no new key may belong
   to another device or be one this device already used.

The caller (``HqArchive.commit``) writes the new keys in the same transaction
as the import, so a refused or interrupted import changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from crypto.enrolment import check_binding
from crypto.errors import StatementError, StatementReason
from crypto.keys import DeviceVerifyKey
from crypto.statements import (
    DeviceRotationStatement,
    DeviceTrust,
    parse_statement,
    verify_device_chain,
)
from fieldapp.hq.errors import ImportRefused, Refusal
from fieldapp.store.database import Connection


@dataclass(frozen=True, slots=True)
class DeviceVerdict:
    """A bundle's device, as HQ will hold it once the bundle is imported."""

    name: str
    binds: bool  # the identity's first bundle: it binds the enrolment
    new_keys: tuple[tuple[int, DeviceVerifyKey], ...]  # (version, key) to record
    keys: frozenset[bytes]  # every key of the identity afterwards (raw public keys)


def _rotation_refused(reason: StatementReason, detail: str) -> ImportRefused:
    return ImportRefused(
        Refusal.DEVICE_ROTATION,
        f"The bundle's device key rotation was refused ({reason.value}): {detail}",
    )


def _parse(statements: Sequence[bytes]) -> list[DeviceRotationStatement]:
    parsed = []
    for data in statements:
        try:
            statement = parse_statement(data)
        except StatementError as e:
            raise _rotation_refused(e.reason, "a statement is malformed.") from e
        if not isinstance(statement, DeviceRotationStatement):
            raise _rotation_refused(
                StatementReason.WRONG_KIND, "a statement is not a device key rotation."
            )
        parsed.append(statement)
    return parsed


def _verify(trust: DeviceTrust, statements: Sequence[bytes], now: int) -> None:
    try:
        verify_device_chain(trust, statements, now)
    except StatementError as e:
        raise _rotation_refused(
            e.reason, "it does not lead from the key HQ trusts; the device keeps its old key."
        ) from e


def judge(
    c: Connection,
    enrolment_id: bytes,
    signer: DeviceVerifyKey,
    binding: bytes,
    statements: Sequence[bytes],
    now: int,
) -> DeviceVerdict:
    """The verdict on a bundle's device claim; raises ImportRefused. Reads, never writes."""
    row = c.execute(
        "SELECT name, secret, revoked_at, bound_at FROM devices WHERE enrolment_id = ?",
        (enrolment_id,),
    ).fetchone()
    if row is None:
        raise ImportRefused(
            Refusal.UNKNOWN_DEVICE, "The bundle names an enrolment this HQ never issued."
        )
    name, secret, revoked, bound = str(row[0]), row[1], row[2], row[3]
    if revoked is not None:  # before anything the bundle presents is looked at
        raise ImportRefused(
            Refusal.REVOKED_DEVICE, f"Device {name!r} is revoked; its bundles are refused."
        )
    owner = c.execute(
        "SELECT device_name FROM device_keys WHERE public = ?", (signer.raw,)
    ).fetchone()
    if owner is not None and str(owner[0]) != name:
        raise ImportRefused(
            Refusal.ENROLMENT, "The bundle's enrolment does not match its signing device."
        )
    parsed = _parse(statements)
    held = [
        (int(v), bytes(k))
        for v, k in c.execute(
            "SELECT version, public FROM device_keys WHERE device_name = ? ORDER BY version",
            (name,),
        )
    ]
    if not held:
        new_keys = _first_bundle(name, secret, bound, signer, binding, statements, parsed, now)
    else:
        new_keys = _later_bundle(name, held, owner is not None, signer, statements, parsed, now)
    keys = {k for _, k in held}
    for _, key in new_keys:
        other = c.execute(
            "SELECT device_name FROM device_keys WHERE public = ?", (key.raw,)
        ).fetchone()
        if (other is not None and str(other[0]) != name) or key.raw in keys:
            raise _rotation_refused(
                StatementReason.WRONG_SUBJECT,
                "a new key belongs to another device or was used before.",
            )
        keys.add(key.raw)
    return DeviceVerdict(name, not held, tuple(new_keys), frozenset(keys))


def _first_bundle(
    name: str,
    secret: object,
    bound: object,
    signer: DeviceVerifyKey,
    binding: bytes,
    statements: Sequence[bytes],
    parsed: Sequence[DeviceRotationStatement],
    now: int,
) -> list[tuple[int, DeviceVerifyKey]]:
    """No key bound yet: the enrolment proof binds the signer (and the chain leading to it)."""
    if bound is not None or not isinstance(secret, bytes):
        raise ImportRefused(
            Refusal.ENROLMENT,
            f"The enrolment of {name!r} was already used by another device key.",
        )
    if not check_binding(secret, signer, binding):
        raise ImportRefused(Refusal.ENROLMENT, "The bundle's enrolment proof does not verify.")
    if not parsed:
        return [(0, signer)]
    # The device rotated before HQ heard from it: the chain from version 1, checked
    # from its own first key, binds every key on it (bundles signed by the earlier
    # keys may still be on their way).
    _verify(DeviceTrust.anchor(parsed[0].old_device), statements, now)
    chain = [(0, parsed[0].old_device)] + [(s.version, s.new_device) for s in parsed]
    if signer.raw not in {k.raw for _, k in chain}:
        raise _rotation_refused(
            StatementReason.WRONG_SUBJECT, "it does not lead to the bundle's signing key."
        )
    return chain


def _later_bundle(
    name: str,
    held: Sequence[tuple[int, bytes]],
    signer_known: bool,
    signer: DeviceVerifyKey,
    statements: Sequence[bytes],
    parsed: Sequence[DeviceRotationStatement],
    now: int,
) -> list[tuple[int, DeviceVerifyKey]]:
    """The identity has keys: follow the statements newer than the one HQ trusts."""
    version, current = held[-1]
    trust = DeviceTrust(DeviceVerifyKey(current), version)
    newer = [raw for raw, s in zip(statements, parsed, strict=True) if s.version > version]
    if newer:
        _verify(trust, newer, now)
    new_keys = [(s.version, s.new_device) for s in parsed if s.version > version]
    if signer_known or signer.raw in {k.raw for _, k in new_keys}:
        return new_keys
    if not parsed:
        raise ImportRefused(
            Refusal.ENROLMENT,
            f"The enrolment of {name!r} was already used by another device key.",
        )
    if not newer:
        raise _rotation_refused(
            StatementReason.REPLAYED,
            "its statements are no newer than the key HQ already trusts for this device.",
        )
    raise _rotation_refused(
        StatementReason.WRONG_SUBJECT, "it does not lead to the bundle's signing key."
    )
