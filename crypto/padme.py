"""Padmé padding (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files
and Communication with PURBs", PETS 2019).

A length L is rounded up so that only its top ~log2(log2(L)) bits are kept: the
padded size leaks O(log log L) bits about L, and costs at most about 12% extra
(less as L grows).
"""

from __future__ import annotations

MAX_LENGTH = (1 << 62) - 1


def padme(length: int) -> int:
    """The Padmé-padded size for a payload of ``length`` bytes.

    Raises ValueError for a negative or absurdly large length.
    """
    if length < 0 or length > MAX_LENGTH:
        raise ValueError("length out of range")
    if length < 2:
        return length
    e = length.bit_length() - 1  # floor(log2 L)
    s = e.bit_length()  # floor(log2 E) + 1
    last_bits = e - s
    mask = (1 << last_bits) - 1
    return (length + mask) & ~mask
