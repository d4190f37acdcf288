"""HQ's side: its home and keys, the archive of imported testimony, devices, receipts.

The archive is an encrypted SQLCipher store like the monitor's, opened the same
way, with its own schema. Opening, verifying and importing bundles is sync's job
(sync/hqimport.py); this package keeps what was imported and answers questions
about it.
"""
