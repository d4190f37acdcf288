"""Refuse to run the UI where Textual would copy what is on screen elsewhere."""

from __future__ import annotations

from collections.abc import Mapping

from fieldapp.errors import ExitCode, FieldappError

# Textual's devtools stream every frame to another process; its log and
# screenshot variables write to files. Any of them would carry testimony.
_UNSAFE_VARIABLES = (
    "TEXTUAL_LOG",
    "TEXTUAL_DEBUG",
    "TEXTUAL_SCREENSHOT",
    "TEXTUAL_SCREENSHOT_LOCATION",
    "TEXTUAL_SCREENSHOT_FILENAME",
    "TEXTUAL_PRESS",
    "TEXTUAL_DEVTOOLS_HOST",
    "TEXTUAL_DEVTOOLS_PORT",
    "TEXTUAL_DRIVER",  # e.g. the web driver streams every frame to stdout
)
_UNSAFE_FEATURES = ("devtools", "debug")


class UnsafeEnvironment(FieldappError):
    exit_code = ExitCode.USAGE


def check_environment(environ: Mapping[str, str]) -> None:
    """Raise UnsafeEnvironment if a Textual debugging variable is set."""
    found = [name for name in _UNSAFE_VARIABLES if environ.get(name)]
    features = environ.get("TEXTUAL", "").lower()
    if any(feature in features for feature in _UNSAFE_FEATURES):
        found.append("TEXTUAL")
    if found:
        raise UnsafeEnvironment(
            f"Refusing to start: {', '.join(found)} is set, which would copy the screen "
            "to a log or another program. Unset it and start fieldapp again."
        )
