"""``fieldapp relay init`` and ``fieldapp relay serve`` as a user runs them."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

from fieldapp.errors import ExitCode
from sync.relay.tokens import token_hash
from tests.relay.server import CLI, REPO, RelayProcess, free_port, relay_cli, store_snapshot


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_init_creates_a_private_folder_and_shows_the_tokens_once(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "relay"
    done = relay_cli("relay", "init", "--data", folder)
    assert done.returncode == 0, done.stderr
    tokens = re.findall(r"^(?:upload|hq) token: ([A-Za-z0-9_-]{43})$", done.stdout, re.MULTILINE)
    assert len(tokens) == 2 and tokens[0] != tokens[1]
    assert "shown only this once" in done.stdout
    assert "tls pin" not in done.stdout
    assert folder.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in folder.iterdir()) == [
        "blobs",
        "receipts",
        "relay.json",
        "statements",
        "tokens.json",
        "uploads",
    ]
    stored = json.loads((folder / "tokens.json").read_text())
    assert stored == {
        "version": 1,
        "upload": [token_hash(tokens[0])],
        "hq": [token_hash(tokens[1])],
    }
    for content in _files(folder).values():  # only the hashes were kept
        assert not any(t.encode() in content for t in tokens)


def test_init_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    done = relay_cli("relay", "init", "--data", tmp_path)
    assert done.returncode == ExitCode.IO
    assert done.stderr.startswith("fieldapp: That folder is not empty")
    assert done.stdout == ""
    assert [p.name for p in tmp_path.iterdir()] == ["precious.txt"]
    again = relay_cli("relay", "init", "--data", tmp_path / "r")
    assert again.returncode == 0
    assert relay_cli("relay", "init", "--data", tmp_path / "r").returncode == ExitCode.IO


def test_init_with_tls_prints_the_pin(tmp_path: Path) -> None:
    relay = RelayProcess.create(tmp_path, tls=True)
    assert relay.pin is not None and re.fullmatch(r"[0-9a-f]{64}", relay.pin)
    assert sorted(p.name for p in (relay.data_dir / "tls").iterdir()) == ["cert.pem", "key.pem"]


def test_serve_refuses_a_folder_that_is_not_a_relay(tmp_path: Path) -> None:
    done = relay_cli("relay", "serve", "--data", tmp_path, "--port", "1")
    assert done.returncode == ExitCode.IO
    assert done.stderr == (
        "fieldapp: That folder is not a relay data folder; create one with `fieldapp relay init`.\n"
    )


def test_serve_tls_needs_a_certificate(tmp_path: Path) -> None:
    relay = RelayProcess.create(tmp_path)
    done = relay_cli("relay", "serve", "--data", relay.data_dir, "--tls", "--port", "1")
    assert done.returncode == ExitCode.IO
    assert "relay init --tls" in done.stderr


def test_serve_tls_with_a_damaged_key(tmp_path: Path) -> None:
    relay = RelayProcess.create(tmp_path, tls=True)
    (relay.data_dir / "tls" / "key.pem").write_text("not a key")
    done = relay_cli("relay", "serve", "--data", relay.data_dir, "--tls", "--port", "1")
    assert done.returncode == ExitCode.IO
    assert "TLS certificate or key cannot be read" in done.stderr


def test_serve_refuses_bad_settings(tmp_path: Path) -> None:
    relay = RelayProcess.create(tmp_path, settings={"max_pending_upload": 3})  # a typo
    done = relay_cli("relay", "serve", "--data", relay.data_dir, "--port", "1")
    assert done.returncode == ExitCode.IO
    assert "unknown setting 'max_pending_upload'" in done.stderr


def test_sigint_and_sigterm_stop_the_relay_cleanly(tmp_path: Path) -> None:
    relay = RelayProcess.create(tmp_path)
    for sig in (signal.SIGTERM, signal.SIGINT):
        relay.start()
        assert relay.process is not None
        relay.process.send_signal(sig)
        assert relay.process.wait(timeout=30) == 0
    assert relay.output().count("stopped") == 2
    assert "Traceback" not in relay.output()


def test_relay_help_lists_its_commands() -> None:
    done = subprocess.run(
        [*CLI, "relay", "--help"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert "init" in done.stdout and "serve" in done.stdout


def test_a_second_relay_on_a_busy_port_or_the_same_folder_fails_clearly(tmp_path: Path) -> None:
    first = RelayProcess.create(tmp_path / "a")
    first.start()
    try:
        second = RelayProcess.create(tmp_path / "b")
        busy = relay_cli("relay", "serve", "--data", second.data_dir, "--port", str(first.port))
        assert busy.returncode == ExitCode.IO
        assert busy.stderr.endswith(
            "fieldapp: The relay did not start (see the lines above): the port may be in use, "
            "or another relay serves this data folder.\n"
        )
        before = store_snapshot(first.data_dir)
        same = relay_cli("relay", "serve", "--data", first.data_dir, "--port", str(free_port()))
        assert same.returncode == ExitCode.IO
        assert "Another relay process is serving this data folder." in same.stderr
        assert store_snapshot(first.data_dir) == before
        with first.client() as http:
            assert http.get("/v1/health").status_code == 200
    finally:
        first.kill()
