"""What can go wrong with a home and its store, in words a monitor can act on."""

from __future__ import annotations

from fieldapp.errors import ExitCode, FieldappError


class StoreError(FieldappError):
    """Base class of store failures."""


class ChangedMeanwhile(StoreError):
    """Another process changed the same keys or trust state between our read and write."""

    exit_code = ExitCode.ERROR

    def __init__(self) -> None:
        super().__init__(
            "Another fieldapp process changed the same keys at the same moment, so this one "
            "changed nothing. Run the command again."
        )


class HomeMissing(StoreError):
    exit_code = ExitCode.ERROR

    def __init__(self) -> None:
        super().__init__(
            "No fieldapp home is set up here. Run `fieldapp init`, or pass --home "
            "with the folder you created."
        )


class HomeExists(StoreError):
    exit_code = ExitCode.ERROR

    def __init__(self) -> None:
        super().__init__(
            "A fieldapp home already exists in that folder; refusing to overwrite it. "
            "Choose another folder with --home."
        )


class DatabaseDamaged(StoreError):
    exit_code = ExitCode.DATA

    def __init__(self) -> None:
        super().__init__(
            "The encrypted database is damaged or was replaced, so it was not read. "
            "Stop using this copy and restore the home folder from a backup."
        )


class UnsupportedDatabase(StoreError):
    exit_code = ExitCode.ERROR

    def __init__(self, what: str) -> None:
        super().__init__(f"Refusing to run: {what}. Reinstall fieldapp with `make run`.")


class NewerSchema(StoreError):
    exit_code = ExitCode.DATA

    def __init__(self) -> None:
        super().__init__(
            "This home was written by a newer fieldapp; update fieldapp before opening it."
        )


class RecordNotFound(StoreError):
    exit_code = ExitCode.ERROR

    def __init__(self) -> None:
        super().__init__(
            "No testimony has that id (or the prefix matches none). List them with "
            "`fieldapp record list`."
        )


class AmbiguousId(StoreError):
    exit_code = ExitCode.USAGE

    def __init__(self) -> None:
        super().__init__("That id prefix matches several testimonies; type more of the id.")


class AttachmentUnreadable(StoreError):
    exit_code = ExitCode.IO

    def __init__(self) -> None:
        super().__init__(
            "An attachment could not be read: check that the file exists, is a regular "
            "file and is readable. Nothing was saved."
        )


class StoreIOError(StoreError):
    exit_code = ExitCode.IO

    def __init__(self) -> None:
        super().__init__(
            "The home folder could not be written (disk full or permissions); nothing "
            "was saved. Free some space and try again."
        )


class StoreClosed(StoreError):
    exit_code = ExitCode.AUTH

    def __init__(self) -> None:
        super().__init__("The records are locked; enter the passphrase to continue.")


class SearchCancelled(StoreError):
    """A search superseded by a newer one was stopped; nothing to show for it."""

    exit_code = ExitCode.ERROR

    def __init__(self) -> None:
        super().__init__("The search was replaced by a newer one.")


class WrongKindOfHome(StoreError):
    """A monitor command was pointed at an HQ home, or the other way round."""

    exit_code = ExitCode.USAGE


def hq_home_refused() -> WrongKindOfHome:
    return WrongKindOfHome(
        "This is an HQ home, not a monitor's. Use `fieldapp hq ...` commands with it, "
        "or choose the monitor's home with --home."
    )


class RecordPurged(StoreError):
    """The testimony's content was removed from this device after HQ confirmed it."""

    exit_code = ExitCode.ERROR

    def __init__(self) -> None:
        super().__init__(
            "HQ confirmed this testimony and its content was removed from this device, "
            "as the remove-confirmed setting asks; HQ holds it."
        )


class HomeInUse(StoreError):
    """Another process has the database open while it must be used alone (a rekey)."""

    exit_code = ExitCode.ERROR

    def __init__(self) -> None:
        super().__init__(
            "Another fieldapp window or command has this home open; close it, then try again. "
            "Nothing was changed."
        )
