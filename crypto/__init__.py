"""Pure cryptography for fieldapp: keys, keyslots, statements and the bundle envelope.

No database, no network, no UI: bytes in, verified objects or exceptions out.
Built on libsodium (PyNaCl) high-level constructions and ``cryptography``'s HKDF.
"""
