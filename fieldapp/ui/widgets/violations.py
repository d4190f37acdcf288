"""Violation types as a multi-select with type-to-filter above it.

The picker keeps the chosen codes itself: the SelectionList shows only the terms
that match the filter, and rebuilding it would otherwise forget a choice that is
filtered out of view. A chosen code the vocabulary no longer offers (deprecated)
stays chosen, unseen, so editing an old record never drops it.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Input, Label, SelectionList

from fieldapp.domain import Term, Vocabulary


class ViolationPicker(Vertical):
    class Changed(Message):
        """The set of chosen violation codes changed."""

        def __init__(self, picker: ViolationPicker) -> None:
            super().__init__()
            self.picker = picker

        @property
        def control(self) -> ViolationPicker:
            return self.picker

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 -- Textual's name
        super().__init__(id=id)
        self._vocabulary: Vocabulary | None = None
        self._chosen: set[str] = set()
        self._shown: set[str] = set()
        self._lang = "en"

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="Type to filter (English or Arabic), Enter to pick",
            id="violation-filter",
            compact=True,
        )
        yield SelectionList[str](id="violation-list")
        yield Label("", id="violation-chosen", classes="hint", markup=False)

    @property
    def chosen(self) -> frozenset[str]:
        self._sync()
        return frozenset(self._chosen)

    def load(self, vocabulary: Vocabulary, chosen: frozenset[str], lang: str) -> None:
        self._vocabulary = vocabulary
        self._chosen = set(chosen)
        self._lang = _primary(lang)
        self._rebuild()

    def set_language(self, lang: str) -> None:
        """Show labels in the narrative's language when the vocabulary has them."""
        primary = _primary(lang)
        if primary != self._lang:
            self._lang = primary
            self._rebuild()

    @property
    def options(self) -> SelectionList[str]:
        return self.query_one("#violation-list", SelectionList)

    def _sync(self) -> None:
        """Take over what the user toggled in the visible part of the list."""
        if self._vocabulary is not None:
            self._chosen = (self._chosen - self._shown) | set(self.options.selected)

    def _rebuild(self) -> None:
        if self._vocabulary is None:
            return
        self._sync()
        text = self.query_one("#violation-filter", Input).value
        terms = self._vocabulary.filter(text, self._lang)
        options = self.options
        options.clear_options()
        options.add_options([(self._prompt(t), t.code, t.code in self._chosen) for t in terms])
        self._shown = {t.code for t in terms}
        self._show_chosen()

    def _prompt(self, term: Term) -> Content:
        local = term.label_in(self._lang)
        return Content(term.label if local == term.label else f"{term.label} · {local}")

    def _show_chosen(self) -> None:
        label = self.query_one("#violation-chosen", Label)
        if self._vocabulary is None or not self._chosen:
            label.update("Chosen: none")
            return
        names = [
            self._vocabulary.get(c).label if c in self._vocabulary else c
            for c in sorted(self._chosen)
        ]
        label.update("Chosen: " + "; ".join(names))

    @on(Input.Changed, "#violation-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()  # the filter is not part of the testimony
        self._rebuild()

    @on(Input.Submitted, "#violation-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        options = self.options
        options.focus()
        if options.option_count:
            options.highlighted = 0

    @on(SelectionList.SelectedChanged, "#violation-list")
    def _selection_changed(self, event: SelectionList.SelectedChanged[str]) -> None:
        event.stop()
        before = set(self._chosen)
        self._sync()
        if self._chosen != before:
            self._show_chosen()
            self.post_message(self.Changed(self))


def _primary(lang: str) -> str:
    return lang.strip().split("-", 1)[0] or "en"
