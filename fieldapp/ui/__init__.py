"""The monitor's terminal UI (Textual). Talks only to fieldapp.session and the store's API."""
