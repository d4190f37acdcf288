"""How records are printed: JSON for scripts (stdout), aligned text for people."""

from __future__ import annotations

import json

import click

from fieldapp.domain import ProtectedIdentity, identity_to_json, testimony_to_json
from fieldapp.store.records import HistoryEntry, StoredTestimony, Summary

JSONValue = object


def summary_json(s: Summary) -> dict[str, JSONValue]:
    return {
        "id": s.id,
        "seq": s.seq,
        "status": s.status.value,
        "taken_at": s.taken_at,
        "incident_date": s.incident or None,
        "place": s.place,
        "violations": list(s.violations),
        "witness_code": s.witness_code,
        "updated_at": s.updated_at,
    }


def record_json(r: StoredTestimony, *, with_identity: bool) -> dict[str, JSONValue]:
    out: dict[str, JSONValue] = {
        "id": r.id,
        "seq": r.seq,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "testimony": testimony_to_json(r.testimony),
    }
    if with_identity:
        out["identity"] = _identity(r.identity)
    return out


def _identity(identity: ProtectedIdentity | None) -> JSONValue:
    return None if identity is None else identity_to_json(identity)


def history_json(entries: list[HistoryEntry]) -> list[dict[str, JSONValue]]:
    return [
        {
            "seq": e.seq,
            "created_at": e.created_at,
            "hash": e.hash,
            "device_key": e.device_key,
            "testimony": testimony_to_json(e.testimony),
        }
        for e in entries
    ]


def emit_json(value: JSONValue) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


def emit_table(rows: list[Summary]) -> None:
    if not rows:
        click.echo("No testimonies.", err=True)
        return
    header = ("ID", "TAKEN", "INCIDENT", "STATUS", "WITNESS", "VIOLATIONS", "PLACE")
    lines = [
        (
            r.id,
            r.taken_at[:10],
            r.incident,
            r.status.value,
            r.witness_code or "-",
            ",".join(r.violations) or "-",
            r.place,
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header[:-1])]
    for line in (header, *lines):
        cells = [cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)]
        click.echo("  ".join([*cells, line[-1]]))


def emit_record(r: StoredTestimony, *, with_identity: bool) -> None:
    t = r.testimony
    click.echo(f"Testimony {r.id}  (revision {r.seq}, {t.status.value})")
    click.echo(f"Taken:      {t.taken_at.isoformat(timespec='minutes')} at {t.taken_place.text}")
    click.echo(f"Language:   {t.language}")
    if t.incident_date is not None:
        click.echo(f"Incident:   {t.incident_date}")
    if t.incident_place is not None:
        click.echo(f"Place:      {t.incident_place.text}")
    click.echo(f"Violations: {', '.join(t.violations) or '-'}")
    click.echo(f"Witness:    {t.witness_code or '-'}")
    if with_identity and r.identity is not None:
        click.echo(f"Identity:   {r.identity.name}  {r.identity.contact}")
    if t.consent is not None:
        scopes = ", ".join(sorted(s.value for s in t.consent.scopes))
        click.echo(f"Consent:    {scopes} (taken {t.consent.taken_on})")
    for a in t.attachments:
        click.echo(f"Attachment: {a.attachment_id}  {a.filename}  {a.size} B  sha256 {a.sha256}")
    click.echo("")
    click.echo(t.narrative)
