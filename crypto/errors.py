"""The exceptions crypto/ raises.

Every message is written for the person at the keyboard: it says what went wrong
and what to do next, and never carries key material, passphrases, plaintext or
paths. Callers may show ``error.message`` as it is. Anything else crypto/ lets
escape is a bug.
"""

from __future__ import annotations

from enum import StrEnum


class CryptoError(Exception):
    """Base class of every failure raised by crypto/."""

    default_message = "A cryptographic operation failed."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class InvalidKey(CryptoError):
    """A key has the wrong length, is malformed, or is a weak (low-order) point."""

    default_message = "A key is malformed or unusable; it may have been corrupted or tampered with."


class KeyslotError(CryptoError):
    """Base class of keyslot failures."""


class WrongSecret(KeyslotError):
    """No slot opens with the passphrase or recovery code given."""

    default_message = "Wrong passphrase or recovery code. Check it and try again."


class KeyslotCorrupt(KeyslotError):
    """The keyslot file cannot be parsed or violates its bounds."""

    default_message = (
        "The keyslot file is damaged or not a fieldapp keyslot file; restore it from backup."
    )


class WeakParameters(KeyslotError):
    """Argon2id parameters below the production floor were asked for."""

    default_message = "The key-derivation parameters are below the allowed minimum."


class KeyFileError(CryptoError):
    """A key file could not be written safely (disk full, permissions, symlink)."""

    default_message = (
        "A key file could not be written safely; nothing was changed. "
        "Check free space and permissions of the home folder."
    )


class StatementReason(StrEnum):
    """Why a signed statement or chain was refused (for logs and tests)."""

    MALFORMED = "malformed"
    WRONG_KIND = "wrong-kind"
    BAD_SIGNATURE = "bad-signature"
    MISSING_SIGNATURE = "missing-signature"
    REPLAYED = "replayed"
    SKIPPED_VERSION = "skipped-version"
    EXPIRED = "expired"
    WRONG_SUBJECT = "wrong-subject"


class StatementError(CryptoError):
    """A signed statement, or a chain of them, failed verification.

    ``reason`` says which check failed. When a chain is refused the caller's
    trusted state is unchanged: the verifier is a pure function.
    """

    def __init__(self, reason: StatementReason, message: str | None = None) -> None:
        self.reason = reason
        super().__init__(
            message
            or f"A signed key statement was refused ({reason.value}); "
            "keep the keys you have and ask HQ for a fresh statement."
        )


class BundleReason(StrEnum):
    """Why a bundle was refused. One exception type, many reasons (for logs)."""

    FORMAT = "format"  # magic, version, sizes: refused before any public-key work
    NO_MATCHING_KEY = "no-matching-key"  # no HQ box key opens the header
    HEADER = "header"  # header opened but its fields are invalid
    SIGNATURE = "signature"  # the device signature does not verify
    UNKNOWN_DEVICE = "unknown-device"  # signed by a device this HQ does not trust
    PAYLOAD = "payload"  # a chunk failed, was reordered, dropped, truncated or padded wrong
    TOO_LARGE = "too-large"  # declared sizes exceed the configured bound


class BundleError(CryptoError):
    """A bundle could not be opened. Nothing from it may be trusted or kept.

    ``reason`` is for logs and quarantine notes; ``message`` for the user.
    """

    def __init__(self, reason: BundleReason, message: str | None = None) -> None:
        self.reason = reason
        super().__init__(
            message
            or f"This bundle cannot be opened ({reason.value}): it is damaged, tampered with, "
            "or not addressed to this HQ. It was not imported."
        )


class ReceiptReason(StrEnum):
    """Why an HQ import receipt was refused (for logs and tests)."""

    MALFORMED = "malformed"  # not exactly the 144-byte layout: refused before any key work
    UNKNOWN_SIGNER = "unknown-signer"  # the signer key id is none of the trusted HQ roots
    BAD_SIGNATURE = "bad-signature"  # the signature does not verify under that root


_RECEIPT_MESSAGES = {
    ReceiptReason.MALFORMED: (
        "An HQ import receipt is damaged or is not a receipt. Nothing was marked as "
        "received by HQ; sync again later."
    ),
    ReceiptReason.UNKNOWN_SIGNER: (
        "An import receipt was signed by a key this device does not trust as HQ. Nothing "
        "was marked as received by HQ; tell HQ if this keeps happening."
    ),
    ReceiptReason.BAD_SIGNATURE: (
        "An HQ import receipt has been altered or damaged: its HQ signature does not "
        "verify. Nothing was marked as received by HQ; sync again later."
    ),
}


class ReceiptError(CryptoError):
    """An HQ import receipt was refused: nothing it says may be acted on.

    ``reason`` is for logs and tests; ``message`` for the user.
    """

    def __init__(self, reason: ReceiptReason, message: str | None = None) -> None:
        self.reason = reason
        super().__init__(message or _RECEIPT_MESSAGES[reason])


class EnrolmentReason(StrEnum):
    """Why an enrolment file was refused (for logs and tests)."""

    MALFORMED = "malformed"  # not the documented layout, or a field out of bounds
    BAD_SIGNATURE = "bad-signature"  # the body is not signed by the HQ root it names
    FOREIGN = "foreign"  # signed by an HQ root other than the one this device trusts
    CHAIN = "chain"  # the HQ key statements it carries do not verify from that root


_ENROLMENT_MESSAGES = {
    EnrolmentReason.MALFORMED: (
        "This is not a fieldapp enrolment file, or it is damaged; it was not imported. "
        "Ask HQ for a new one."
    ),
    EnrolmentReason.BAD_SIGNATURE: (
        "This enrolment file has been altered or damaged: its HQ signature does not "
        "verify. Ask HQ for a new one."
    ),
    EnrolmentReason.FOREIGN: (
        "This enrolment file comes from a different HQ than the one this device is "
        "enrolled with; it was not imported."
    ),
    EnrolmentReason.CHAIN: (
        "The HQ key statements in this enrolment file were refused; it was not imported. "
        "Ask HQ for a new one."
    ),
}


class EnrolmentError(CryptoError):
    """An enrolment file was refused: nothing from it was imported.

    ``reason`` is for logs and tests; ``message`` for the monitor at the keyboard.
    When the statement chain is refused (CHAIN) the message is the statement
    error's own, and the ``StatementError`` is the ``__cause__``.
    """

    def __init__(self, reason: EnrolmentReason, message: str | None = None) -> None:
        self.reason = reason
        super().__init__(message or _ENROLMENT_MESSAGES[reason])


class TokenNoticeReason(StrEnum):
    """Why an upload-token notice was refused (for logs and tests)."""

    MALFORMED = "malformed"  # not the documented layout, or a field out of bounds
    WRONG_KIND = "wrong-kind"  # another fieldapp format (a key statement) given as a notice
    WRONG_SIGNER = "wrong-signer"  # signed by a key other than the HQ root this device trusts
    BAD_SIGNATURE = "bad-signature"  # the root's signature does not verify
    REPLAYED = "replayed"  # a serial at or below the one this device already applied
    WRONG_SERIAL = "wrong-serial"  # the entry was sealed for another notice's serial
    UNOPENABLE = "unopenable"  # the entry named for this device does not open with its key


class TokenNoticeError(CryptoError):
    """An upload-token notice was refused: the device keeps the token it has.

    ``reason`` is for logs and tests; ``message`` for the monitor at the keyboard.
    """

    def __init__(self, reason: TokenNoticeReason, message: str | None = None) -> None:
        self.reason = reason
        super().__init__(
            message
            or f"HQ's notice of a new relay upload token was refused ({reason.value}); this "
            "device keeps the token it has. Tell HQ if this keeps happening."
        )
