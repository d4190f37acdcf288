"""The relay's tokens as they change: the token book in memory, the upload-token notice on disk.

HQ rotates the upload token with ``PUT /v1/upload-token`` (sync/relay/tokenroutes.py):
the new token's hash, and HQ's signed notice that carries the new token sealed
to each enrolled device (crypto/tokennotice.py). ``rotate`` writes, in order:

1. ``tokens.json``: the new hash added, the older upload hashes given the end
   of their grace (the notice's ``previous_valid_until``);
2. ``upload-token-notice.bin``: the notice devices fetch.

Each is a temp file, fsynced, renamed and made durable by a folder fsync. A
crash between the two leaves the new token accepted and the old one still in
its grace, with the previous notice served: no device has the new token yet and
every device's old one still works; HQ sends the same request again. The other
order could serve a token the relay does not accept yet: every device that
picked it up would be locked out. The book in memory changes only after both.
"""

from __future__ import annotations

import threading
from typing import Final

from crypto.errors import TokenNoticeError
from crypto.tokennotice import MAX_NOTICE_BYTES, parse_notice
from sync.relay.errors import BadRequest, Conflict, RelaySetupError
from sync.relay.fsio import atomic_write, read_small
from sync.relay.settings import RelaySettings
from sync.relay.tokens import TOKENS_FILE, Role, TokenBook, load_tokens

NOTICE_FILE: Final = "upload-token-notice.bin"


class TokenKeeper:
    """The current ``TokenBook`` and notice of one relay data folder. Thread-safe."""

    def __init__(self, settings: RelaySettings, book: TokenBook) -> None:
        self._settings = settings
        self._folder = settings.data_dir
        self._book = book
        self._lock = threading.Lock()

    @classmethod
    def load(cls, settings: RelaySettings) -> TokenKeeper:
        """The tokens of ``settings.data_dir``. Raises RelaySetupError."""
        return cls(settings, load_tokens(settings.data_dir))

    @property
    def book(self) -> TokenBook:
        return self._book

    def allows(self, authorization: str | None, role: Role) -> bool:
        return self._book.allows(authorization, role, self._settings.clock())

    def notice(self) -> bytes | None:
        """The stored notice, or None if HQ never rotated the token. Raises OSError."""
        try:
            return read_small(self._folder / NOTICE_FILE, MAX_NOTICE_BYTES)
        except FileNotFoundError:
            return None

    def rotate(self, new_hash: bytes, notice: bytes) -> None:
        """Make ``new_hash`` the upload token and ``notice`` the one served (see the module).

        Sending the same request again is accepted and changes nothing more.
        Raises BadRequest (a malformed notice), Conflict (an older or different
        notice under that serial, the HQ token's hash, too many tokens in their
        grace), OSError.
        """
        try:
            parsed = parse_notice(notice)
        except TokenNoticeError as e:
            raise BadRequest("The notice is malformed; nothing was changed.") from e
        with self._lock:
            stored = self.notice()
            if stored is not None:
                try:
                    current = parse_notice(stored).serial
                except TokenNoticeError as e:
                    raise RelaySetupError(
                        f"{NOTICE_FILE} is damaged; restore it from a backup."
                    ) from e
                if parsed.serial < current or (parsed.serial == current and stored != notice):
                    raise Conflict(
                        "The relay holds a newer notice, or another one under that serial; "
                        "nothing was changed."
                    )
            try:
                book = self._book.rotated(
                    new_hash, parsed.previous_valid_until, self._settings.clock()
                )
            except ValueError as e:
                raise Conflict(
                    "That token cannot become the upload token (it is HQ's, or too many "
                    "tokens are still in their grace period); nothing was changed."
                ) from e
            atomic_write(self._folder, TOKENS_FILE, book.document())
            self._book = book  # what tokens.json now says, whatever happens next
            if stored != notice:
                atomic_write(self._folder, NOTICE_FILE, notice)
