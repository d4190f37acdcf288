"""The relay's parts, built once by ``create_app`` and handed to every route."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from sync.relay.errors import BadRequest, Unauthorized
from sync.relay.records import ReceiptLog, StatementBook
from sync.relay.settings import RelaySettings
from sync.relay.storage import BlobStore
from sync.relay.tokenkeeper import TokenKeeper
from sync.relay.tokens import Role

TUS_VERSION = "1.0.0"


@dataclass(frozen=True, slots=True)
class Relay:
    settings: RelaySettings
    tokens: TokenKeeper
    blobs: BlobStore
    receipts: ReceiptLog
    statements: StatementBook

    @classmethod
    def open(cls, settings: RelaySettings) -> Relay:
        """The parts of the relay in ``settings.data_dir``. Raises RelaySetupError."""
        data = settings.data_dir
        return cls(
            settings,
            TokenKeeper.load(settings),
            BlobStore(settings),
            ReceiptLog(data / "receipts"),
            StatementBook(data / "statements"),
        )

    def require(self, request: Request, role: Role) -> None:
        """Raise Unauthorized unless the request's token may act as ``role``."""
        if not self.tokens.allows(request.headers.get("authorization"), role):
            raise Unauthorized


def require_tus(request: Request) -> None:
    if request.headers.get("tus-resumable") != TUS_VERSION:
        raise BadRequest("Tus-Resumable: 1.0.0 is required on upload requests.")
