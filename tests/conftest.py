"""Shared fixtures. Keep each one small and documented; add yours below."""

from __future__ import annotations

from typing import TypedDict

import pytest

from crypto.kdf import KDF_MINIMUM, KdfParams


class KdfKwargs(TypedDict):
    """``params=`` and ``floor=`` for the keyslot functions."""

    params: KdfParams
    floor: KdfParams


# libsodium's minimum (1 pass over 8 KiB): a derivation costs about 0.1 ms.
CHEAP_KDF = KDF_MINIMUM


@pytest.fixture(scope="session")
def cheap_kdf() -> KdfKwargs:
    """Argon2id made nearly free, floor lowered to match: ``create_keyslots(m, pw, **cheap_kdf)``.

    Session-scoped (it is immutable) so hypothesis tests may use it.
    """
    return {"params": CHEAP_KDF, "floor": CHEAP_KDF}
