"""The encrypted field store: SQLCipher database, attachments, revisions, outbox.

Nothing readable reaches the disk: the database is SQLCipher under a raw key
derived from the master key, attachments are encrypted per file, and the keys
themselves live only in the keyslot file. No Textual here (see STYLE.md).
"""
