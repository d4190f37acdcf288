"""Putting HQ's key statement chain on the relay right after a key change.

``hq pull`` publishes the whole chain every time (sync/pull.py); a rotation
publishes it at once too, so devices that push before HQ next pulls already
learn the new key. Publishing is idempotent: the relay accepts the same bytes
again for a version and refuses different ones (409).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from fieldapp.hq.archive import HqArchive
from sync.relayclient import DEFAULT_TIMEOUT, Backoff, RelayClient

PUBLISH_BUDGET_SECONDS = 30.0  # a rotation is done already; don't keep the operator waiting


@dataclass(frozen=True, slots=True)
class Published:
    relay: str  # scheme://host:port, for display
    statements: int


def publish_statements(
    archive: HqArchive,
    *,
    proxy: str | None = None,
    budget_seconds: float = PUBLISH_BUDGET_SECONDS,
    client_factory: Callable[..., RelayClient] = RelayClient,
) -> Published | None:
    """Put every statement of HQ's chain on the configured relay; None if there is none.

    Raises a RelayError (after retrying what may pass) or RelaySettingError.
    """
    config = archive.relay_config()
    if config is None:
        return None
    chain = archive.statements()
    backoff = Backoff(budget_seconds=budget_seconds)
    with client_factory(
        config.url, config.hq_token, pin=config.pin, proxy=proxy, timeout=DEFAULT_TIMEOUT
    ) as client:
        backoff.start()
        put_chain(client, backoff, chain)
        return Published(client.name, len(chain))


def put_chain(client: RelayClient, backoff: Backoff, chain: Sequence[bytes]) -> int:
    """Put HQ's chain on the relay, version 1 first; how many statements were put."""
    for version, statement in enumerate(chain, start=1):
        backoff.call(partial(client.put_statement, version, statement))
    return len(chain)
