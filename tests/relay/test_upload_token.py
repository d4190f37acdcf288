"""``/v1/upload-token``: HQ rotates the upload token, devices fetch the notice; old tokens expire.

Most tests run the relay app in this process (Starlette's TestClient, the real
app and data folder) so that the relay's clock can be moved: ``RelaySettings.clock``.
One test runs the real ``relay serve`` process to check the rotation survives a
restart with the expiry in force.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from crypto.keys import DeviceSigningKey, RootSigningKey
from crypto.tokennotice import MAX_NOTICE_BYTES, token_text, write_notice
from sync.relay.app import create_app
from sync.relay.datadir import init_relay
from sync.relay.errors import BadRequest, RelaySetupError
from sync.relay.settings import load_settings
from sync.relay.tokenkeeper import NOTICE_FILE
from sync.relay.tokenroutes import MAX_PUT_BYTES, _rotation
from sync.relay.tokens import MAX_UPLOAD_TOKENS, TOKENS_FILE, Role, load_tokens, new_token
from tests.relay.server import RelayProcess, running_relay, store_snapshot

ROOT = RootSigningKey(bytes([1]) * 32)
DEVICE = DeviceSigningKey(bytes([2]) * 32)
NOW = 1_800_000_000.0
DAY = 86_400


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Relay:
    def __init__(self, folder: Path, clock: Clock, http: TestClient, upload: str, hq: str):
        self.folder, self.clock, self.http, self.upload, self.hq = folder, clock, http, upload, hq

    def get(self, path: str, token: str | None) -> Any:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return self.http.get(path, headers=headers)

    def rotate(self, token: str, notice: bytes, *, auth: str | None = None) -> Any:
        return self.put_body(
            json.dumps({"token_sha256": _sha(token), "notice": _b64(notice)}).encode(),
            auth=auth,
        )

    def put_body(self, body: bytes, *, auth: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {auth or self.hq}", "Content-Type": "application/json"}
        return self.http.put("/v1/upload-token", content=body, headers=headers)

    def works(self, token: str) -> bool:
        status: int = self.get("/v1/receipts", token).status_code
        assert status in (200, 401)
        return status == 200


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def notice(serial: int, *, grace_until: float, issued: float = NOW) -> bytes:
    return write_notice(
        ROOT,
        serial=serial,
        issued_at=int(issued),
        previous_valid_until=int(grace_until),
        token=bytes([serial]) * 32,
        devices=[DEVICE.public_key],
    )


def _open(folder: Path, clock: Clock) -> TestClient:
    settings = load_settings(folder)
    object.__setattr__(settings, "clock", clock)  # frozen dataclass: the test's clock
    return TestClient(create_app(settings))


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Relay]:
    folder = tmp_path / "relay"
    made = init_relay(folder, tls=False)
    clock = Clock()
    with _open(folder, clock) as http:
        yield Relay(folder, clock, http, made.upload_token, made.hq_token)


# ---------------------------------------------------------------- the endpoints


def test_no_notice_before_the_first_rotation(relay: Relay) -> None:
    for token in (relay.upload, relay.hq):
        answer = relay.get("/v1/upload-token", token)
        assert answer.status_code == 404
        assert answer.json()["error"] == "not-found"
    assert relay.get("/v1/upload-token", None).status_code == 401
    assert relay.get("/v1/upload-token", new_token()).status_code == 401


def test_only_hq_may_rotate(relay: Relay) -> None:
    before = store_snapshot(relay.folder)
    for auth in (relay.upload, new_token()):
        answer = relay.rotate(new_token(), notice(1, grace_until=NOW + DAY), auth=auth)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
    assert store_snapshot(relay.folder) == before
    assert relay.works(relay.upload)


def test_rotation_with_a_grace_period(relay: Relay) -> None:
    new = token_text(bytes([1]) * 32)
    data = notice(1, grace_until=NOW + 14 * DAY)
    assert relay.rotate(new, data).status_code == 204
    # The notice is served to both roles, byte for byte.
    for token in (relay.upload, new, relay.hq):
        answer = relay.get("/v1/upload-token", token)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/octet-stream"
        assert answer.content == data
    # During the grace both tokens work; at its end (relay clock) only the new one.
    relay.clock.now = NOW + 14 * DAY - 1
    assert relay.works(relay.upload) and relay.works(new)
    relay.clock.now = NOW + 14 * DAY
    assert not relay.works(relay.upload)
    assert relay.works(new)
    assert relay.works(relay.hq)
    assert relay.get("/v1/upload-token", relay.upload).status_code == 401
    # The new token is an upload token only.
    assert relay.get("/v1/blobs", new).status_code == 401
    stored = json.loads((relay.folder / TOKENS_FILE).read_text())
    assert stored["version"] == 2
    assert stored["upload_valid_until"] == {_sha(relay.upload): int(NOW + 14 * DAY)}
    assert relay.upload not in (relay.folder / TOKENS_FILE).read_text()
    assert new not in (relay.folder / TOKENS_FILE).read_text()


def test_a_second_rotation_shortens_no_grace_beyond_the_first(relay: Relay) -> None:
    t1, t2 = token_text(bytes([1]) * 32), token_text(bytes([2]) * 32)
    assert relay.rotate(t1, notice(1, grace_until=NOW + 10 * DAY)).status_code == 204
    assert relay.rotate(t2, notice(2, grace_until=NOW + 30 * DAY)).status_code == 204
    relay.clock.now = NOW + 10 * DAY  # the original token's grace (the first) is over
    assert not relay.works(relay.upload)
    assert relay.works(t1) and relay.works(t2)
    relay.clock.now = NOW + 30 * DAY
    assert not relay.works(t1)
    assert relay.works(t2)


def test_sending_the_same_rotation_again_changes_nothing(relay: Relay) -> None:
    new = token_text(bytes([1]) * 32)
    data = notice(1, grace_until=NOW + DAY)
    assert relay.rotate(new, data).status_code == 204
    after_first = store_snapshot(relay.folder)
    relay.clock.now = NOW + 60
    assert relay.rotate(new, data).status_code == 204
    assert store_snapshot(relay.folder) == after_first
    assert relay.works(relay.upload) and relay.works(new)


def test_zero_grace_ends_the_old_token_at_once(relay: Relay) -> None:
    new = token_text(bytes([1]) * 32)
    assert relay.rotate(new, notice(1, grace_until=NOW)).status_code == 204
    assert not relay.works(relay.upload)
    assert relay.works(new)


CONFLICTS = {
    "an older serial": lambda r: r.rotate(new_token(), notice(1, grace_until=NOW)),
    "another notice under the same serial": lambda r: r.rotate(
        new_token(), notice(2, grace_until=NOW + 2 * DAY)
    ),
    "HQ's token as the upload token": lambda r: r.rotate(r.hq, notice(3, grace_until=NOW)),
}


@pytest.mark.parametrize("name", sorted(CONFLICTS))
def test_conflicting_rotations_change_nothing(relay: Relay, name: str) -> None:
    assert relay.rotate(new_token(), notice(2, grace_until=NOW + DAY)).status_code == 204
    before = store_snapshot(relay.folder)
    answer = CONFLICTS[name](relay)
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"] == "conflict"
    assert store_snapshot(relay.folder) == before


def test_too_many_tokens_in_their_grace_are_refused(relay: Relay) -> None:
    for serial in range(1, MAX_UPLOAD_TOKENS):
        answer = relay.rotate(new_token(), notice(serial, grace_until=NOW + DAY))
        assert answer.status_code == 204
    before = store_snapshot(relay.folder)
    answer = relay.rotate(new_token(), notice(MAX_UPLOAD_TOKENS, grace_until=NOW + DAY))
    assert answer.status_code == 409
    assert store_snapshot(relay.folder) == before
    # Once their grace is over they are dropped, and rotating works again.
    relay.clock.now = NOW + DAY
    answer = relay.rotate(new_token(), notice(MAX_UPLOAD_TOKENS, grace_until=NOW + 2 * DAY))
    assert answer.status_code == 204
    assert len(load_tokens(relay.folder).upload) == 2


# ---------------------------------------------------------------- hostile bodies


def _body(**fields: Any) -> bytes:
    value = {
        "token_sha256": _sha(new_token()),
        "notice": _b64(notice(1, grace_until=NOW)),
        **fields,
    }
    return json.dumps(value).encode()


HOSTILE: dict[str, tuple[bytes, int]] = {
    "empty": (b"", 400),
    "not JSON": (b"\xff\xfe{", 400),
    "a list": (b"[]", 400),
    "deeply nested": (b"[" * 500_000 + b"]" * 500_000, 400),
    "an extra key": (_body(extra=1), 400),
    "a missing key": (json.dumps({"token_sha256": "00" * 32}).encode(), 400),
    "uppercase hash": (_body(token_sha256="AB" * 32), 400),
    "short hash": (_body(token_sha256="ab" * 31), 400),
    "hash as a number": (_body(token_sha256=1), 400),
    "notice not base64": (_body(notice="!!!!"), 400),
    "notice base64 with a newline": (_body(notice="AAAA\nAAAA"), 400),
    "notice of random bytes": (_body(notice=_b64(b"\x00" * 200)), 400),
    "notice truncated": (_body(notice=_b64(notice(1, grace_until=NOW)[:-1])), 400),
    "notice with trailing bytes": (_body(notice=_b64(notice(1, grace_until=NOW) + b"\0")), 400),
    "a key statement as the notice": (_body(notice=_b64(b"FASTMT" + b"\x00" * 200)), 400),
    "grace ending before the issue": (
        _body(notice=_b64(struct.pack(">6sBQQQI", b"FATOKN", 1, 1, 10, 9, 0) + b"\0" * 80)),
        400,
    ),
    "serial 0": (
        _body(notice=_b64(struct.pack(">6sBQQQI", b"FATOKN", 1, 0, 10, 10, 0) + b"\0" * 80)),
        400,
    ),
    "too large": (b" " * (MAX_PUT_BYTES + 1), 413),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_bodies_change_nothing(relay: Relay, name: str) -> None:
    body, status = HOSTILE[name]
    before = store_snapshot(relay.folder)
    answer = relay.put_body(body)
    assert answer.status_code == status, answer.text
    assert set(answer.json()) == {"error", "message"}
    assert "\n" not in answer.json()["message"]
    assert store_snapshot(relay.folder) == before
    assert relay.works(relay.upload)


def test_the_put_limit_fits_the_largest_notice() -> None:
    largest = json.dumps({"token_sha256": "0" * 64, "notice": _b64(b"\0" * MAX_NOTICE_BYTES)})
    assert len(largest) <= MAX_PUT_BYTES


# ---------------------------------------------------------------- tokens.json


def test_a_version_1_tokens_file_still_loads(tmp_path: Path) -> None:
    made = init_relay(tmp_path / "r", tls=False)
    upload, hq = made.upload_token, made.hq_token
    stored = json.loads((tmp_path / "r" / TOKENS_FILE).read_text())
    assert stored["version"] == 1
    assert "upload_valid_until" not in stored
    book = load_tokens(tmp_path / "r")
    assert book.allows(f"Bearer {upload}", Role.UPLOAD)
    assert not book.allows(f"Bearer {upload}", Role.HQ)
    assert book.allows(f"Bearer {hq}", Role.HQ)


BAD_FILES: dict[str, Any] = {
    "version 1 with expiries": lambda u, h: {
        "version": 1,
        "upload": [u],
        "hq": [h],
        "upload_valid_until": {u: 1},
    },
    "version 2 without expiries": lambda u, h: {"version": 2, "upload": [u], "hq": [h]},
    "an expiry for an unknown hash": lambda u, h: {
        "version": 2,
        "upload": [u],
        "hq": [h],
        "upload_valid_until": {"0" * 64: 1},
    },
    "an expiry that is not a whole number": lambda u, h: {
        "version": 2,
        "upload": [u],
        "hq": [h],
        "upload_valid_until": {u: 1.5},
    },
    "a repeated upload hash": lambda u, h: {"version": 1, "upload": [u, u], "hq": [h]},
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_bad_tokens_file_stops_the_relay(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "r"
    made = init_relay(folder, tls=False)
    document = BAD_FILES[name](_sha(made.upload_token), _sha(made.hq_token))
    (folder / TOKENS_FILE).write_text(json.dumps(document))
    with pytest.raises(RelaySetupError, match=r"tokens\.json"):
        load_tokens(folder)


# ---------------------------------------------------------------- a real relay process


def test_the_rotation_survives_a_restart(tmp_path: Path) -> None:
    with running_relay(tmp_path) as process:
        new = token_text(bytes([1]) * 32)
        data = notice(1, grace_until=0, issued=0)  # a grace that ended long ago
        with process.client(process.hq_token) as http:
            answer = http.put(
                "/v1/upload-token",
                json={"token_sha256": _sha(new), "notice": _b64(data)},
            )
        assert answer.status_code == 204
        _check_rotated(process, new, data)
        process.restart()
        _check_rotated(process, new, data)
        assert (process.data_dir / NOTICE_FILE).read_bytes() == data


def _check_rotated(process: RelayProcess, new: str, data: bytes) -> None:
    with process.client(process.upload_token) as http:
        assert http.get("/v1/receipts").status_code == 401
    with process.client(new) as http:
        assert http.get("/v1/receipts").status_code == 200
        assert http.get("/v1/upload-token").content == data


def test_the_protocol_document_states_the_limits() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "relay-protocol.md").read_text()
    assert f"{MAX_PUT_BYTES:,} bytes" in text
    assert f"{MAX_NOTICE_BYTES:,} bytes" in text
    assert f"At most {MAX_UPLOAD_TOKENS}" in text.replace("\n", " ")


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)


@given(st.binary(max_size=400) | _JSON.map(lambda v: json.dumps(v).encode()))
def test_the_put_body_parser_raises_only_bad_request(body: bytes) -> None:
    try:
        digest, raw = _rotation(body)
    except BadRequest as e:
        assert "\n" not in e.message
        return
    assert len(digest) == 32
    assert isinstance(raw, bytes)


@given(
    st.dictionaries(
        st.sampled_from(["version", "upload", "hq", "upload_valid_until", "other"]),
        _JSON,
    )
)
def test_any_tokens_file_loads_or_is_refused_in_one_line(document: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / TOKENS_FILE).write_text(json.dumps(document))
        try:
            load_tokens(Path(folder))
        except RelaySetupError as e:
            assert "\n" not in e.message
