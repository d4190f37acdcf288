"""The optional ``age`` comparison: an X25519 identity and the two command lines."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Age:
    binary: str
    identity: Path
    recipient: str
    version: str

    def encrypt_argv(self, src: Path, dst: Path) -> list[str]:
        return [self.binary, "-r", self.recipient, "-o", str(dst), str(src)]

    def decrypt_argv(self, src: Path) -> list[str]:
        return [self.binary, "-d", "-i", str(self.identity), "-o", os.devnull, str(src)]


def find_age(workdir: Path) -> Age | None:
    """Set up ``age`` with a fresh identity in ``workdir``; None if it is not on PATH."""
    binary = shutil.which("age")
    keygen = shutil.which("age-keygen")
    if binary is None or keygen is None:
        return None
    identity = workdir / "age-identity.txt"
    subprocess.run([keygen, "-o", str(identity)], check=True, capture_output=True)
    recipient = subprocess.run(
        [keygen, "-y", str(identity)], check=True, capture_output=True, text=True
    ).stdout.strip()
    version = subprocess.run(
        [binary, "--version"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return Age(binary=binary, identity=identity, recipient=recipient, version=version)
