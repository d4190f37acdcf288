"""The device signing key at rest: sealed under the master key's storage subkey."""

from __future__ import annotations

from pathlib import Path

from crypto.errors import InvalidKey
from crypto.kdf import MasterKey, Purpose, derive_subkey, open_secret, seal_secret
from crypto.keyfile import atomic_write, read_key_file
from crypto.keys import DeviceSigningKey
from fieldapp.store.errors import DatabaseDamaged

_MAX_BYTES = 1024


def save_device_key(path: Path, master: MasterKey, key: DeviceSigningKey) -> None:
    """Seal and atomically write the device key. Raises KeyFileError."""
    subkey = derive_subkey(master, Purpose.DEVICE_KEY_STORAGE)
    atomic_write(path, seal_secret(subkey, Purpose.DEVICE_KEY_STORAGE, key.secret_bytes()))


def load_device_key(path: Path, master: MasterKey) -> DeviceSigningKey:
    """Read and open the device key. Raises KeyFileError, DatabaseDamaged."""
    blob = read_key_file(path, _MAX_BYTES)
    subkey = derive_subkey(master, Purpose.DEVICE_KEY_STORAGE)
    try:
        return DeviceSigningKey(open_secret(subkey, Purpose.DEVICE_KEY_STORAGE, blob))
    except InvalidKey as e:
        raise DatabaseDamaged from e
