"""Recovery codes: format, forgiving input, typo detection, and use as a keyslot."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.errors import WrongSecret
from crypto.kdf import MasterKey
from crypto.keyslot import SlotKind, add_slot, create_keyslots, unlock
from crypto.recovery import (
    ALPHABET,
    NOT_A_CODE_MESSAGE,
    TYPO_MESSAGE,
    encode_recovery_code,
    format_recovery_code,
    generate_recovery_code,
    normalize_recovery_code,
)
from tests.conftest import KdfKwargs

CODE_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{5}(-[0-9A-HJKMNP-TV-Z]{5}){4}$")
secrets15 = st.binary(min_size=15, max_size=15)


def _independent_check_char(data24: str) -> str:
    """The check character as docs/keyslots.md defines it, written out again here."""
    digest = hashlib.blake2b(data24.encode(), digest_size=1, person=b"fa-recovery-v1").digest()
    return "0123456789ABCDEFGHJKMNPQRSTVWXYZ"[digest[0] >> 3]


def test_alphabet_is_crockford_base32() -> None:
    assert ALPHABET == "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    assert len(set(ALPHABET)) == 32
    assert not set("ILOU") & set(ALPHABET)


def test_generated_codes_have_the_paper_format_and_differ() -> None:
    codes = {generate_recovery_code() for _ in range(200)}
    assert len(codes) == 200
    for code in codes:
        assert CODE_RE.match(code), code
        assert len(normalize_recovery_code(code)) == 15


@pytest.mark.parametrize(
    ("secret", "code"),
    [
        (bytes(15), "00000-00000-00000-00000-0000"),
        (bytes(range(15)), "000G4-0R40M-30E20-9185G-R38E"),
        (b"\xff" * 15, "ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ-ZZZZ"),
    ],
)
def test_known_answers(secret: bytes, code: str) -> None:
    # The data characters are plain big-endian base32 of the 120 bits; the check
    # character is recomputed independently from the documented definition.
    data = code.replace("-", "")
    full = code + _independent_check_char(data)
    assert encode_recovery_code(secret) == full
    assert normalize_recovery_code(full) == secret


@given(secrets15)
def test_encode_normalize_round_trip(secret: bytes) -> None:
    code = encode_recovery_code(secret)
    assert CODE_RE.match(code)
    assert normalize_recovery_code(code) == secret
    assert format_recovery_code(code.lower()) == code


@given(secrets15, st.data())
def test_normalisation_forgives_case_separators_and_look_alikes(
    secret: bytes, data: st.DataObject
) -> None:
    code = encode_recovery_code(secret)
    chars = []
    for c in code.replace("-", ""):
        options = {"0": "0Oo", "1": "1IiLl"}.get(c, c + c.lower())
        chars.append(data.draw(st.sampled_from(options)))
        chars.append(data.draw(st.sampled_from(["", "", " ", "-", "  "])))
    typed = data.draw(st.sampled_from(["", " "])) + "".join(chars)
    assert normalize_recovery_code(typed) == secret


def test_specific_look_alikes() -> None:
    code = encode_recovery_code(bytes(15))  # all zeros: "00000-..."
    assert normalize_recovery_code(code.replace("0", "O")) == bytes(15)
    assert normalize_recovery_code(code.replace("0", "o").replace("-", " ")) == bytes(15)
    ones = encode_recovery_code(bytes.fromhex("084210842108421084210842108421"))
    assert ones.startswith("11111")
    for alias in "IiLl":
        assert normalize_recovery_code(ones.replace("1", alias)) == normalize_recovery_code(ones)


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "00000-00000-00000-00000-000",  # one short
        "00000-00000-00000-00000-000000",  # one long
        "U0000-00000-00000-00000-00009",  # U is not in the alphabet
        "00000_00000_00000_00000_00009",  # underscores are not separators
        "00000-00000-00000-00000-0000٩",  # an Arabic-Indic digit
        "correct horse battery",
        "0" * 10_000,
    ],
)
def test_not_a_code(typed: str) -> None:
    with pytest.raises(WrongSecret) as raised:
        normalize_recovery_code(typed)
    assert raised.value.message == NOT_A_CODE_MESSAGE


@given(secrets15)
def test_every_wrong_check_character_is_a_typo(secret: bytes) -> None:
    code = encode_recovery_code(secret)
    for c in ALPHABET:
        if c == code[-1]:
            continue
        with pytest.raises(WrongSecret) as raised:
            normalize_recovery_code(code[:-1] + c)
        assert raised.value.message == TYPO_MESSAGE


def test_single_substitutions_in_the_data_are_mostly_caught() -> None:
    # 5 check bits catch 31/32 of random substitutions; expect about 96.9 %.
    caught = total = 0
    for n in range(20):
        code = encode_recovery_code(hashlib.sha256(bytes([n])).digest()[:15]).replace("-", "")
        for i in range(24):
            for c in ALPHABET:
                if c == code[i]:
                    continue
                total += 1
                try:
                    normalize_recovery_code(code[:i] + c + code[i + 1 :])
                except WrongSecret as e:
                    assert e.message == TYPO_MESSAGE
                    caught += 1
    assert caught / total > 0.94


def test_recovery_code_round_trip_through_a_slot(cheap_kdf: KdfKwargs) -> None:
    master = MasterKey.generate()
    ks = create_keyslots(master, "passphrase", **cheap_kdf)
    code = generate_recovery_code()
    ks, slot_id = add_slot(ks, master, code, SlotKind.RECOVERY, **cheap_kdf)
    typed = code.lower().replace("-", " ").replace("0", "o")
    opened, opened_id = unlock(ks, typed)
    assert opened == master
    assert opened_id == slot_id
    assert ks.slot(slot_id).kind is SlotKind.RECOVERY


def test_a_typo_in_a_recovery_code_is_reported_as_a_typo_by_unlock(
    cheap_kdf: KdfKwargs,
) -> None:
    master = MasterKey.generate()
    ks = create_keyslots(master, "passphrase", **cheap_kdf)
    code = generate_recovery_code()
    ks, _ = add_slot(ks, master, code, SlotKind.RECOVERY, **cheap_kdf)
    wrong_check = code[:-1] + ("0" if code[-1] != "0" else "1")
    with pytest.raises(WrongSecret) as raised:
        unlock(ks, wrong_check)
    assert raised.value.message == TYPO_MESSAGE
    other = generate_recovery_code()  # well-formed, just not ours
    with pytest.raises(WrongSecret) as raised:
        unlock(ks, other)
    assert raised.value.message == WrongSecret.default_message


def test_adding_a_malformed_recovery_code_is_refused(cheap_kdf: KdfKwargs) -> None:
    master = MasterKey.generate()
    ks = create_keyslots(master, "passphrase", **cheap_kdf)
    with pytest.raises(WrongSecret):
        add_slot(ks, master, "not a code", SlotKind.RECOVERY, **cheap_kdf)
