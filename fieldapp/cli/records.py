"""record add | list | show | edit, search, check: scripting access to testimonies."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from fieldapp.cli.inputfiles import STDIN, read_text_input
from fieldapp.cli.output import (
    emit_json,
    emit_record,
    emit_table,
    history_json,
    record_json,
    summary_json,
)
from fieldapp.cli.secrets import SecretInputError
from fieldapp.cli.session import open_store
from fieldapp.cli.state import CliState, pass_state
from fieldapp.domain import (
    Consent,
    ConsentScope,
    IncidentDate,
    Perpetrator,
    Place,
    ProtectedIdentity,
    Reliability,
    SourceType,
    Status,
    Testimony,
    ValidationError,
    identity_from_json,
    parse_witness_code,
)
from fieldapp.errors import ExitCode, FieldappError
from fieldapp.store.errors import DatabaseDamaged
from fieldapp.store.store import FieldStore

MAX_NARRATIVE_FILE = 1 << 20
MAX_IDENTITY_FILE = 64 << 10


class InputFileError(FieldappError):
    exit_code = ExitCode.IO


def _read_text(spec: str, limit: int, what: str) -> str:
    return read_text_input(spec, limit, what, InputFileError)


def _options(func: Any) -> Any:
    """The fields shared by ``record add`` and ``record edit``."""
    decorators = [
        click.option(
            "--narrative-file", metavar="FILE", help="UTF-8 text of the narrative (- for stdin)."
        ),
        click.option(
            "--language", metavar="TAG", help="Language of the narrative, e.g. ar, en, ku."
        ),
        click.option(
            "--taken-at", metavar="ISO", help="When it was taken, e.g. 2016-12-10T14:30+03:00."
        ),
        click.option("--taken-place", metavar="TEXT", help="Where it was taken."),
        click.option(
            "--incident-date", metavar="D", help="YYYY, YYYY-MM, YYYY-MM-DD or START/END."
        ),
        click.option("--place", metavar="TEXT", help="Where the incident happened."),
        click.option(
            "--violation",
            "violations",
            multiple=True,
            metavar="CODE",
            help="Violation type code (repeatable).",
        ),
        click.option(
            "--perpetrator",
            "perpetrators",
            multiple=True,
            metavar="TEXT",
            help="Alleged perpetrator (repeatable).",
        ),
        click.option("--victims", "victim_count", type=int, metavar="N", help="Number of victims."),
        click.option(
            "--source",
            type=click.Choice([s.value for s in SourceType]),
            help="How the source knows.",
        ),
        click.option(
            "--reliability",
            type=click.Choice([r.value for r in Reliability]),
            help="Your confidence in the source.",
        ),
        click.option(
            "--witness-code", metavar="CODE", help="Existing witness code (default: a new one)."
        ),
        click.option("--no-witness", is_flag=True, help="No witness (e.g. a document)."),
        click.option(
            "--witness-name",
            metavar="NAME",
            help="Witness name (shows in the process list: prefer --identity-file).",
        ),
        click.option(
            "--identity-file",
            metavar="FILE",
            help='JSON {"name","contact","address","notes"} of the witness.',
        ),
        click.option(
            "--consent",
            "consent",
            multiple=True,
            type=click.Choice([c.value for c in ConsentScope]),
            help="What the witness agreed to (repeatable).",
        ),
        click.option(
            "--attach",
            "attach",
            multiple=True,
            metavar="FILE",
            help="File to attach, encrypted (repeatable).",
        ),
        click.option(
            "--status",
            type=click.Choice([Status.DRAFT.value, Status.READY.value]),
            help="draft or ready.",
        ),
        click.option(
            "--passphrase-file", metavar="PATH", help="Read the passphrase from PATH (- for stdin)."
        ),
        click.option("--json", "as_json", is_flag=True, help="Print the record as JSON."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def _parse_taken_at(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as e:
        raise ValidationError.single("taken_at", "use ISO form, e.g. 2016-12-10T14:30+03:00") from e
    return value if value.tzinfo else value.astimezone()


def _identity(opts: dict[str, Any], current: ProtectedIdentity | None) -> ProtectedIdentity | None:
    if opts["identity_file"]:
        text = _read_text(opts["identity_file"], MAX_IDENTITY_FILE, "identity")
        try:
            return identity_from_json(json.loads(text))
        except ValueError as e:
            raise ValidationError.single("identity", "the identity file is not valid JSON") from e
    if opts["witness_name"]:
        base = current or ProtectedIdentity()
        return dataclasses.replace(base, name=opts["witness_name"])
    return None


_SIMPLE_OPTIONS: tuple[tuple[str, str, Callable[[Any], Any]], ...] = (
    # (option, Testimony field, conversion of the option's value)
    ("language", "language", str),
    ("taken_at", "taken_at", _parse_taken_at),
    ("taken_place", "taken_place", Place),
    ("incident_date", "incident_date", IncidentDate.parse),
    ("place", "incident_place", Place),
    ("violations", "violations", tuple),
    ("perpetrators", "perpetrators", lambda ps: tuple(Perpetrator(p) for p in ps)),
    ("source", "source_type", SourceType),
    ("reliability", "reliability", Reliability),
    ("status", "status", Status),
)


def _apply(store: FieldStore, base: Testimony, opts: dict[str, Any], now: datetime) -> Testimony:
    """``base`` with every option that was given applied to it."""
    changes: dict[str, Any] = {
        name: convert(opts[option]) for option, name, convert in _SIMPLE_OPTIONS if opts[option]
    }
    if opts["narrative_file"]:
        changes["narrative"] = _read_text(opts["narrative_file"], MAX_NARRATIVE_FILE, "narrative")
    if opts["victim_count"] is not None:
        changes["victims"] = dataclasses.replace(base.victims, count=opts["victim_count"])
    if opts["no_witness"]:
        changes["witness_code"] = None
    elif opts["witness_code"]:
        changes["witness_code"] = parse_witness_code(opts["witness_code"])
    if opts["consent"]:
        changes["consent"] = Consent(
            scopes=frozenset(ConsentScope(c) for c in opts["consent"]),
            taken_by=store.recorded_by,
            taken_on=now.date(),
        )
    return dataclasses.replace(base, **changes)


@click.group("record")
def record_group() -> None:
    """Add, list, show and edit testimonies."""


@record_group.command("add")
@_options
@pass_state
def record_add(state: CliState, /, **opts: Any) -> None:
    """Record a new testimony; prints its id (or the record with --json)."""
    if not opts["narrative_file"]:
        raise SecretInputError("Give the narrative with --narrative-file FILE (- for stdin).")
    if opts["narrative_file"] == STDIN and opts["passphrase_file"] == STDIN:
        raise SecretInputError("The narrative and the passphrase cannot both come from stdin.")
    with open_store(state, opts["passphrase_file"]) as store:
        now = state.clock().astimezone()
        place = opts["taken_place"] or opts["place"]
        base = Testimony(
            recorded_by=store.recorded_by,
            taken_at=now.replace(second=0, microsecond=0),
            taken_place=Place(place) if place else _missing_place(),
            language="und",
            narrative="",
            witness_code=None if opts["no_witness"] else store.new_witness_code(),
        )
        testimony = _apply(store, base, opts, now)
        saved = store.create(
            testimony,
            identity=_identity(opts, None),
            attach=[Path(p) for p in opts["attach"]],
        )
        if opts["as_json"]:
            emit_json(record_json(saved, with_identity=False))
        else:
            click.echo(saved.id)


def _missing_place() -> Place:
    raise ValidationError.single("taken_place", "say where it was taken: --taken-place or --place")


@record_group.command("edit")
@click.argument("record_id")
@_options
@pass_state
def record_edit(state: CliState, /, record_id: str, **opts: Any) -> None:
    """Change a testimony: every change is a new signed revision."""
    with open_store(state, opts["passphrase_file"]) as store:
        current = store.get(record_id)
        testimony = _apply(store, current.testimony, opts, state.clock().astimezone())
        saved = store.update(
            current.id,
            testimony,
            identity=_identity(opts, current.identity),
            attach=[Path(p) for p in opts["attach"]],
        )
        if opts["as_json"]:
            emit_json(record_json(saved, with_identity=False))
        else:
            click.echo(f"{saved.id} revision {saved.seq}")


PASSPHRASE = click.option(
    "--passphrase-file", metavar="PATH", help="Read the passphrase from PATH."
)
AS_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@record_group.command("list")
@click.option("--status", type=click.Choice([s.value for s in Status]), help="Only this status.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@PASSPHRASE
@AS_JSON
@pass_state
def record_list(
    state: CliState,
    status: str | None,
    limit: int,
    offset: int,
    passphrase_file: str | None,
    as_json: bool,
) -> None:
    """List testimonies, most recently changed first."""
    with open_store(state, passphrase_file) as store:
        rows = store.page(status=Status(status) if status else None, limit=limit, offset=offset)
    if as_json:
        emit_json([summary_json(r) for r in rows])
    else:
        emit_table(rows)


@record_group.command("show")
@click.argument("record_id")
@click.option("--history", is_flag=True, help="Every revision, verified, oldest first.")
@click.option("--identity", "with_identity", is_flag=True, help="Include the witness identity.")
@PASSPHRASE
@AS_JSON
@pass_state
def record_show(
    state: CliState,
    record_id: str,
    history: bool,
    with_identity: bool,
    passphrase_file: str | None,
    as_json: bool,
) -> None:
    """Show one testimony (an id or a unique prefix of one)."""
    with open_store(state, passphrase_file) as store:
        record = store.get(record_id)
        entries = store.history(record.id) if history else []
    if as_json:
        out = record_json(record, with_identity=with_identity)
        if history:
            out["history"] = history_json(entries)
        emit_json(out)
        return
    emit_record(record, with_identity=with_identity)
    for e in entries:
        click.echo(f"revision {e.seq}  {e.created_at}  {e.testimony.status.value}  {e.hash[:16]}")


@click.command("search")
@click.argument("query")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@PASSPHRASE
@AS_JSON
@pass_state
def search_command(
    state: CliState, query: str, limit: int, passphrase_file: str | None, as_json: bool
) -> None:
    """Full-text search over narratives, places, perpetrators and violation types."""
    with open_store(state, passphrase_file) as store:
        rows = store.search(query, limit=limit)
    if as_json:
        emit_json([summary_json(r) for r in rows])
    else:
        emit_table(rows)


@click.command("check")
@PASSPHRASE
@pass_state
def check_command(state: CliState, passphrase_file: str | None) -> None:
    """Check every page of the database and every revision chain."""
    with open_store(state, passphrase_file) as store:
        if store.integrity_problems():
            raise DatabaseDamaged
        count = store.verify_all()
    click.echo(f"OK: the database is intact and {count} revision histories verify.")
