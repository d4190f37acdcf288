"""Helpers for the end-to-end tests: the real ``fieldapp`` CLI in subprocesses, like a user.

Every command runs as ``python -m tests.cheapcli ARGS`` (the real CLI with cheap
Argon2id) in its own process, with no terminal and no ``FIELDAPP_HOME``; each
actor (an HQ, a monitor) has its own ``--home`` and passphrase files.

``encoded_forms`` and ``find_leaks`` look for a secret in every file of a folder
the way a forensic search would: raw UTF-8, UTF-16 in both byte orders, JSON's
``\\uXXXX`` escapes, base64 at every byte alignment and hex.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import resource
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fieldapp.errors import ExitCode
from fieldapp.hq.archive import HqArchive
from fieldapp.hq.vault import unlock_hq
from fieldapp.store.home import Home
from fieldapp.store.store import FieldStore
from fieldapp.store.vault import unlock_home

if TYPE_CHECKING:
    from tests.relay.server import RelayProcess

REPO = Path(__file__).resolve().parents[2]
CLI = (sys.executable, "-m", "tests.cheapcli")
ERROR_PREFIX = "fieldapp: "
_FINGERPRINT = re.compile(r"^HQ fingerprint: ([0-9 ]+)$", re.MULTILINE)


# ---------------------------------------------------------------- running the CLI


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    code: int
    out: str
    err: str

    def describe(self) -> str:
        return f"$ fieldapp {' '.join(self.argv)}\nexit {self.code}\n{self.out}\n{self.err}"

    def json(self) -> Any:
        return json.loads(self.out)


def fieldapp(
    *args: str | Path,
    home: Path | None = None,
    stdin: bytes = b"",
    max_file_bytes: int | None = None,
) -> Result:
    """Run ``fieldapp [--home HOME] ARGS`` in a subprocess; never raises on failure.

    ``max_file_bytes`` makes every write past that offset in any file fail
    (RLIMIT_FSIZE; Python ignores SIGXFSZ, so the write raises EFBIG): a full disk
    or USB stick, for files bigger than the limit only.
    """

    def limit() -> None:
        if max_file_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    argv = tuple(([] if home is None else ["--home", str(home)]) + [str(a) for a in args])
    env = {k: v for k, v in os.environ.items() if k != "FIELDAPP_HOME"}
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONIOENCODING"] = "utf-8"
    proc = subprocess.run(
        [*CLI, *argv],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
        preexec_fn=None if max_file_bytes is None else limit,
    )
    return Result(argv, proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8"))


def assert_ok(result: Result) -> Result:
    assert result.code == ExitCode.OK, result.describe()
    assert "Traceback" not in result.err, result.describe()
    return result


def assert_refused(result: Result, code: int, *, also_allowed: tuple[str, ...] = ()) -> str:
    """Assert an expected failure: exit ``code`` and exactly one ``fieldapp: `` line, no traceback.

    The error line is the last line of stderr; the only other stderr lines
    allowed start with one of ``also_allowed`` (``hq import`` reports each
    quarantined bundle on its own line). Returns the error line.
    """
    assert result.code == code, result.describe()
    assert "Traceback" not in result.err and "Traceback" not in result.out, result.describe()
    lines = result.err.splitlines()
    errors = [line for line in lines if line.startswith(ERROR_PREFIX)]
    assert len(errors) == 1, result.describe()
    assert lines[-1] == errors[0], result.describe()
    others = [line for line in lines if not line.startswith(ERROR_PREFIX)]
    assert all(line.startswith(also_allowed) for line in others), result.describe()
    assert "internal error" not in errors[0], result.describe()
    return errors[0]


# ---------------------------------------------------------------- the actors


def _write_secret(path: Path, secret: str) -> Path:
    path.write_text(secret + "\n", encoding="utf-8")
    return path


@dataclass
class Hq:
    """An HQ home and its two passphrases (in files)."""

    home: Path
    passphrase_file: Path
    protection_file: Path
    fingerprint: str = ""

    def run(self, *args: str | Path) -> Result:
        """``fieldapp --home HQ ARGS --passphrase-file P``."""
        return fieldapp(*args, "--passphrase-file", self.passphrase_file, home=self.home)

    def ok(self, *args: str | Path) -> Result:
        return assert_ok(self.run(*args))

    def enroll(self, device: str, out: Path) -> Path:
        result = self.ok("hq", "enroll", device, "--out", out)
        assert parse_fingerprint(result.out) == self.fingerprint, result.describe()
        return out

    def import_(self, path: Path) -> Result:
        return self.run("hq", "import", path)

    def relay_config(
        self,
        url: str,
        *,
        upload_token: str,
        hq_token: str,
        pin: str | None = None,
        folder: Path | None = None,
    ) -> Result:
        """``hq relay-config`` with the tokens in files beside the HQ home (never in argv)."""
        folder = folder or self.home.parent
        hq_file = _write_secret(folder / "hq-token", hq_token)
        upload_file = _write_secret(folder / "upload-token", upload_token)
        args: list[str | Path] = ["hq", "relay-config", "--relay", url]
        args += ["--hq-token-file", hq_file, "--upload-token-file", upload_file]
        if pin is not None:
            args += ["--pin", pin]
        return self.run(*args)

    def pull(self, *extra: str | Path) -> Result:
        return self.run("hq", "pull", "--budget", "20", *extra)

    def testimonies(self) -> list[dict[str, Any]]:
        value = self.ok("hq", "list", "--json").json()
        assert isinstance(value, list)
        return value

    def ids(self) -> set[str]:
        return {str(row["id"]) for row in self.testimonies()}

    def show(self, record_id: str) -> dict[str, Any]:
        value = self.ok("hq", "show", record_id, "--history", "--json").json()
        assert isinstance(value, dict)
        return value

    def export(self, out: Path, fmt: str, *extra: str | Path) -> Result:
        return self.run("hq", "export", "--format", fmt, "--out", out, *extra)

    def export_with_identities(self, out: Path, fmt: str, *extra: str | Path) -> Result:
        return self.export(
            out,
            fmt,
            "--include-identities",
            "--protection-passphrase-file",
            self.protection_file,
            *extra,
        )

    def quarantine(self) -> list[Path]:
        """The quarantined bundle copies, by name."""
        folder = self.home / "quarantine"
        return sorted(folder.glob("*.fabundle")) if folder.is_dir() else []

    def reasons(self) -> list[str]:
        folder = self.home / "quarantine"
        if not folder.is_dir():
            return []
        return [p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.reason"))]

    def stored_attachments(self) -> list[Path]:
        folder = self.home / "attachments"
        return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def parse_fingerprint(output: str) -> str:
    found = _FINGERPRINT.search(output)
    assert found is not None, output
    return found.group(1).strip()


def new_hq(root: Path, name: str = "hq") -> Hq:
    """``fieldapp hq init`` in ``root/name``; passphrase files beside it."""
    root.mkdir(parents=True, exist_ok=True)
    hq = Hq(
        home=root / name,
        passphrase_file=_write_secret(root / f"{name}.pass", f"{name} passphrase one two"),
        protection_file=_write_secret(root / f"{name}.protect", f"{name} protection three four"),
    )
    result = assert_ok(
        fieldapp(
            "hq",
            "init",
            "--passphrase-file",
            hq.passphrase_file,
            "--protection-passphrase-file",
            hq.protection_file,
            home=hq.home,
        )
    )
    hq.fingerprint = parse_fingerprint(result.out)
    return hq


@dataclass
class Monitor:
    """A monitor's home and passphrase file."""

    home: Path
    passphrase_file: Path
    device: str
    _inputs: Path = field(repr=False, default=Path())
    _count: int = field(repr=False, default=0)

    def run(self, *args: str | Path, max_file_bytes: int | None = None) -> Result:
        return fieldapp(
            *args,
            "--passphrase-file",
            self.passphrase_file,
            home=self.home,
            max_file_bytes=max_file_bytes,
        )

    def ok(self, *args: str | Path) -> Result:
        return assert_ok(self.run(*args))

    def _input(self, suffix: str, data: bytes) -> Path:
        self._count += 1
        path = self._inputs / f"{self.device}-{self._count}{suffix}"
        path.write_bytes(data)
        return path

    def add(
        self,
        narrative: str,
        *,
        identity_name: str | None = None,
        attach: Iterable[Path] = (),
        consent: Iterable[str] = ("internal-only",),
        status: str = "ready",
        place: str = "Bustan al-Qasr crossing",
    ) -> str:
        """``record add`` with the narrative (and identity) in files; returns the id."""
        args: list[str | Path] = [
            "record",
            "add",
            "--narrative-file",
            self._input(".txt", narrative.encode("utf-8")),
            "--language",
            "ar",
            "--taken-at",
            "2016-12-10T14:30+03:00",
            "--taken-place",
            place,
            "--incident-date",
            "2016-12",
            "--violation",
            "arbitrary-detention",
            "--status",
            status,
        ]
        if identity_name is not None:
            ident = {"schema": 1, "name": identity_name, "contact": "", "address": "", "notes": ""}
            args += ["--identity-file", self._input(".json", json.dumps(ident).encode("utf-8"))]
        for scope in consent:
            args += ["--consent", scope]
        for path in attach:
            args += ["--attach", path]
        record_id = self.ok(*args).out.strip()
        assert re.fullmatch(r"[0-9a-z]{20}", record_id), record_id
        return record_id

    def edit_narrative(
        self, record_id: str, narrative: str, *, attach: Iterable[Path] = ()
    ) -> None:
        """A correction after sending: back to draft with the new text, then ready again."""
        text = self._input(".txt", narrative.encode("utf-8"))
        extra: list[str | Path] = []
        for path in attach:
            extra += ["--attach", path]
        self.ok("record", "edit", record_id, "--narrative-file", text, "--status", "draft", *extra)
        self.ok("record", "edit", record_id, "--status", "ready")

    def export(self, folder: Path) -> int:
        """``sync export FOLDER``; returns how many bundles it says it wrote."""
        folder.mkdir(parents=True, exist_ok=True)
        out = self.ok("sync", "export", folder).out
        found = re.search(r"Exported (\d+) bundle", out)
        assert found is not None, out
        return int(found.group(1))

    def push(self, *extra: str | Path) -> Result:
        """``sync push`` (a short retry budget unless ``extra`` gives one)."""
        budget = () if "--budget" in extra else ("--budget", "20")
        return self.run("sync", "push", *budget, *extra)

    def status(self, record_id: str) -> str:
        value = self.ok("record", "show", record_id, "--json").json()
        return str(value["testimony"]["status"])

    def sync_status(self) -> dict[str, Any]:
        value = self.ok("sync", "status", "--json").json()
        assert isinstance(value, dict)
        return value


def new_monitor(root: Path, hq: Hq, device: str) -> Monitor:
    """HQ enrols ``device``; the monitor runs ``init --enroll`` with HQ's fingerprint."""
    root.mkdir(parents=True, exist_ok=True)
    enrolment = hq.enroll(device, root / f"{device}.enrol")
    inputs = root / f"{device}-inputs"
    inputs.mkdir()
    monitor = Monitor(
        home=root / device,
        passphrase_file=_write_secret(root / f"{device}.pass", f"{device} monitor pass five six"),
        device=device,
        _inputs=inputs,
    )
    result = assert_ok(
        fieldapp(
            "init",
            "--enroll",
            enrolment,
            "--hq-fingerprint",
            hq.fingerprint,
            "--passphrase-file",
            monitor.passphrase_file,
            home=monitor.home,
        )
    )
    assert f"Enrolled with HQ as {device!r}" in result.out, result.describe()
    return monitor


def bundles_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.fabundle"))


# ---------------------------------------------------------------- looking for leaks


def encoded_forms(secret: str | bytes) -> dict[str, bytes]:
    """``secret`` as a forensic search looks for it, by form name.

    Text: UTF-8, UTF-16-LE/BE, JSON ``\\uXXXX`` escapes (either case of hex),
    and the base64 (standard and URL-safe) and hex of its UTF-8. Bytes: raw,
    base64 and hex. Inside a longer base64 text the secret starts at one of
    three byte alignments; the base64 groups holding only its bytes are the
    same whatever surrounds them, so each alignment gives one needle.
    """
    forms: dict[str, bytes] = {}
    if isinstance(secret, str):
        raw = secret.encode("utf-8")
        escaped = json.dumps(secret, ensure_ascii=True)[1:-1]
        forms["utf-8"] = raw
        forms["utf-16-le"] = secret.encode("utf-16-le")
        forms["utf-16-be"] = secret.encode("utf-16-be")
        forms["json-escaped"] = escaped.encode("ascii")
        forms["json-escaped-upper"] = re.sub(
            r"\\u([0-9a-f]{4})", lambda m: "\\u" + m.group(1).upper(), escaped
        ).encode("ascii")
    else:
        raw = secret
        forms["raw"] = raw
    if len(raw) < 12:
        raise ValueError("a needle this short would match by chance")
    forms["hex"] = raw.hex().encode("ascii")
    forms["HEX"] = raw.hex().upper().encode("ascii")
    for skip in range(3):
        whole = (len(raw) - skip) // 3 * 3
        forms[f"base64+{skip}"] = base64.b64encode(raw[skip : skip + whole])
        forms[f"base64url+{skip}"] = base64.urlsafe_b64encode(raw[skip : skip + whole])
    return forms


def files_under(*folders: Path) -> Iterator[Path]:
    """Every regular file under ``folders`` (symlinks not followed)."""
    for folder in folders:
        for dirpath, _dirs, names in os.walk(folder):
            for name in names:
                path = Path(dirpath) / name
                if path.is_file() and not path.is_symlink():
                    yield path


def find_leaks(folders: Iterable[Path], secrets: Mapping[str, str | bytes]) -> list[str]:
    """``"file: secret as form"`` for every secret found in a file's bytes or its path."""
    needles = [
        (label, form, data)
        for label, secret in secrets.items()
        for form, data in encoded_forms(secret).items()
    ]
    found = []
    for path in files_under(*folders):
        data = path.read_bytes() + b"\0" + str(path).encode("utf-8", "surrogateescape")
        found += [f"{path}: {label} as {form}" for label, form, n in needles if n in data]
    return found


def sha256sums_problems(folder: Path) -> list[str]:
    """``sha256sum -c SHA256SUMS`` in Python, plus: every file of the export is listed."""
    problems = []
    listed = set()
    for line in (folder / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        digest, sep, name = line.partition("  ")
        if not sep or not re.fullmatch(r"[0-9a-f]{64}", digest):
            problems.append(f"malformed line {line!r}")
            continue
        path = folder / name
        listed.add(path)
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"{name}: FAILED")
    unlisted = set(files_under(folder)) - listed - {folder / "SHA256SUMS"}
    problems += [f"{p.relative_to(folder)}: not listed" for p in sorted(unlisted)]
    return problems


QUARANTINE_LINE = ("quarantined ",)  # what `hq import` prints beside its one-line error


def box_keys(hq: Hq) -> dict[str, dict[str, object]]:
    """``hq keys --json``'s box keys by id, the current one first."""
    return {str(k["key_id"]): k for k in hq.ok("hq", "keys", "--json").json()["box_keys"]}


def current_key(hq: Hq) -> str:
    [current] = [k for k, v in box_keys(hq).items() if v["state"] == "current"]
    return current


# ---------------------------------------------------------------- homes opened in-process


@contextlib.contextmanager
def monitor_store(monitor: Monitor) -> Iterator[FieldStore]:
    """The monitor's home opened in this process, as the CLI opens it."""
    secret = monitor.passphrase_file.read_text(encoding="utf-8").removesuffix("\n")
    store = FieldStore.open(unlock_home(Home(monitor.home), secret))
    try:
        yield store
    finally:
        store.close()


@contextlib.contextmanager
def hq_archive(hq: Hq) -> Iterator[HqArchive]:
    """HQ's archive opened in this process, as the CLI opens it."""
    secret = hq.passphrase_file.read_text(encoding="utf-8").removesuffix("\n")
    archive = HqArchive.open(unlock_hq(Home(hq.home), secret))
    try:
        yield archive
    finally:
        archive.close()


def deployment(root: Path, relay: RelayProcess, *devices: str) -> tuple[Hq, list[Monitor]]:
    """HQ with the relay configured, and monitors enrolled afterwards (files carry the relay)."""
    actors = root / "actors"
    hq = new_hq(actors)
    configured = assert_ok(
        hq.relay_config(
            relay.url, upload_token=relay.upload_token, hq_token=relay.hq_token, pin=relay.pin
        )
    )
    assert relay.hq_token not in configured.out and relay.upload_token not in configured.out
    return hq, [new_monitor(actors, hq, name) for name in devices]
