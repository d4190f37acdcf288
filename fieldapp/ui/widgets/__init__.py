"""Widgets and form helpers the screens share; no storage here."""
