"""fieldapp.domain stays pure: nothing heavy loaded, no assert, its data file shipped."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

import fieldapp.domain
from crypto.keys import KEY_ID_BYTES
from fieldapp.domain.validation import KEY_ID_HEX_CHARS

DOMAIN = Path(fieldapp.domain.__file__).parent
ROOT = DOMAIN.parent.parent
FORBIDDEN = ["textual", "sqlcipher3", "sqlite3", "nacl", "cryptography", "crypto", "sync", "click"]


def test_importing_the_domain_loads_no_ui_database_crypto_or_sync() -> None:
    probe = (
        "import sys, fieldapp.domain\n"
        "fieldapp.domain.Vocabulary.load_default()\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_shipped_code_has_no_assert_statements() -> None:
    # python -O strips assert, so a check written as one would vanish in production.
    for path in sorted(DOMAIN.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        asserts = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Assert)]
        assert asserts == [], f"{path.name}: assert on lines {asserts}"


def test_the_vocabulary_file_is_a_package_resource_and_setuptools_ships_it() -> None:
    assert resources.files("fieldapp.domain").joinpath("data/violations.json").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "domain/data/*.json" in config["tool"]["setuptools"]["package-data"]["fieldapp"]


def test_the_key_id_length_matches_crypto() -> None:
    # The domain may not import crypto/, so it repeats the length; this keeps them equal.
    assert KEY_ID_HEX_CHARS == 2 * KEY_ID_BYTES
