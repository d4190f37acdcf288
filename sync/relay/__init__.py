"""The relay service: an ASGI application that stores and forwards opaque blobs.

``create_app(settings)`` builds the application (docs/relay-protocol.md is its
contract); ``serve`` runs it under uvicorn; ``init_relay`` creates a data
folder. Nothing here is a module-level singleton: every piece is built from a
``RelaySettings``.
"""

from sync.relay.app import create_app
from sync.relay.datadir import InitResult, init_relay
from sync.relay.settings import RelaySettings, load_settings

__all__ = ["InitResult", "RelaySettings", "create_app", "init_relay", "load_settings"]
