"""Failures as the screen shows them: see fieldapp.explain (no crypto import here)."""

from fieldapp.explain import GENERIC, describe

__all__ = ["GENERIC", "describe"]
