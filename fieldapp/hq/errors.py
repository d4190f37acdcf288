"""Why HQ refused a bundle, or could not do what was asked."""

from __future__ import annotations

from enum import StrEnum

from fieldapp.errors import ExitCode, FieldappError


class Refusal(StrEnum):
    """Reasons a bundle goes to quarantine. Stable strings: they appear in notes and logs."""

    FORMAT = "format"  # not a bundle, or a damaged one
    NO_MATCHING_KEY = "no-matching-key"  # sealed to a key this HQ does not hold
    DESTROYED_KEY = "destroyed-key"  # sealed to a box key HQ has since destroyed
    SIGNATURE = "signature"  # the device signature does not verify
    UNKNOWN_DEVICE = "unknown-device"  # no enrolment of this HQ matches the device
    REVOKED_DEVICE = "revoked-device"  # the device's enrolment was revoked
    ENROLMENT = "enrolment"  # the enrolment proof is wrong or the enrolment is used up
    DEVICE_ROTATION = "device-rotation"  # the device key rotation chain does not verify
    PAYLOAD = "payload"  # the contents are malformed or do not match their hashes
    REVISIONS = "revisions"  # a revision chain, signature or testimony does not verify
    CONFLICT = "conflict"  # contradicts what HQ already holds
    TOO_LARGE = "too-large"


class ImportRefused(FieldappError):
    """A bundle failed a check; nothing from it was imported."""

    exit_code = ExitCode.DATA

    def __init__(self, reason: Refusal, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class DeviceExists(FieldappError):
    exit_code = ExitCode.ERROR

    def __init__(self) -> None:
        super().__init__(
            "A device is already enrolled under that name; choose another name "
            "(names are never reused, so a revoked device's name stays taken)."
        )


class DeviceNotFound(FieldappError):
    exit_code = ExitCode.ERROR

    def __init__(self) -> None:
        super().__init__("No device is enrolled under that name; see `fieldapp hq devices`.")


class AttachmentVanished(FieldappError):
    """A file written during this import was gone before the import could commit."""

    exit_code = ExitCode.IO

    def __init__(self) -> None:
        super().__init__(
            "An attachment written during this import was removed before it was recorded "
            "(another HQ command cleaned up what looked like an interrupted import). Nothing "
            "from that bundle was imported and no receipt was signed; run the import again."
        )
