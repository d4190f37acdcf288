"""The folders are the architecture: headless modules never load the UI toolkit.

import-linter checks the import graph statically (``make lint``); this test checks
what actually ends up loaded, which also catches imports done at run time.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import crypto
import fieldapp.domain
import fieldapp.hq
import fieldapp.store
import sync


def _modules(package: object) -> list[str]:
    path = package.__path__  # type: ignore[attr-defined]
    prefix = package.__name__ + "."  # type: ignore[attr-defined]
    return [m.name for m in pkgutil.walk_packages(path, prefix)]


@pytest.mark.parametrize(
    ("modules", "forbidden"),
    [
        (["crypto", *_modules(crypto)], ["textual", "sqlcipher3", "fieldapp", "sync", "httpx"]),
        (
            ["sync", *_modules(sync)],
            # click is not here: httpx imports it for its own command line when it is
            # installed. sync's own modules never import it (import-linter checks that).
            ["textual", "fieldapp.ui", "fieldapp.cli", "fieldapp.session"],
        ),
        (
            ["fieldapp.domain", *_modules(fieldapp.domain)],
            ["textual", "sqlcipher3", "nacl", "crypto", "sync", "click"],
        ),
        (
            [
                "fieldapp.store",
                *_modules(fieldapp.store),
                "fieldapp.session",
                "fieldapp.transfer",
                "fieldapp.cli",
                "fieldapp.cli.records",
                "fieldapp.cli.homecommands",
                "fieldapp.cli.synccommands",
                "fieldapp.cli.hqcommands",
                "fieldapp.hq",
                *_modules(fieldapp.hq),
            ],
            ["textual"],
        ),
    ],
    ids=["crypto", "sync", "domain", "store-and-cli"],
)
def test_headless_packages_do_not_load_forbidden_modules(
    modules: list[str], forbidden: list[str]
) -> None:
    probe = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.')"
        f" for f in {forbidden!r}))\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
