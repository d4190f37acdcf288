"""The attachments of a testimony: file name, size and the SHA-256 recorded at capture."""

from __future__ import annotations

from textual.widgets import Static

from fieldapp.domain import AttachmentRef


def describe_size(size: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


class AttachmentList(Static):
    """One entry per file; the hash gets its own line so it is never cut at 80 columns."""

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 -- Textual's name
        super().__init__("No attachments.", id=id, markup=False)
        self.refs: tuple[AttachmentRef, ...] = ()

    def show(self, refs: tuple[AttachmentRef, ...]) -> None:
        self.refs = refs
        if not refs:
            self.update("No attachments.")
            return
        lines: list[str] = []
        for ref in refs:
            lines += [f"{ref.filename}  ({describe_size(ref.size)})", f"  SHA-256 {ref.sha256}"]
        self.update("\n".join(lines))
