"""The `/` filter of a list, as k9s has it: hidden until `/`, the list narrows as it is typed, enter goes back to the
list with the filter kept (and in view), esc clears it and goes back."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import Input


def filter_binding(*, show: bool = True) -> Binding:
    """The `/` of a screen with a FilterInput, whose action_filter calls slash_pressed().

    A priority binding, run by the app as the key arrives: over SSH the keys typed right after `/` arrive with it,
    and a screen binding would run only after the app had sent them to the list (`c` would open the settings)."""
    return Binding("slash", "filter", "Filter", key_display="/", show=show, priority=True)


def admits(typed: str, *texts: str) -> bool:
    """The one rule of every `/` filter: a row showing these texts (a name, a title ...) stays in the list when one of
    them holds what was typed, whatever its case and the spaces around it; nothing typed keeps every row."""
    words = typed.strip().lower()
    return not words or any(words in text.lower() for text in texts)


class FilterInput(Input):
    DEFAULT_CSS = """
    FilterInput {
        display: none;
        margin: 0 1;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "clear", "Clear the filter", show=False)]

    def __init__(self, placeholder: str, *, list_selector: str, id: str = "filter") -> None:
        # compact: one line, no border, as 80x24 has no room to spare
        super().__init__(placeholder=f"{placeholder}; enter: to the list, esc: clear", id=id, compact=True)
        self._list_selector = list_selector

    @property
    def words(self) -> str:
        """What is typed, trimmed and lower-cased ("": no filter in force)."""
        return self.value.strip().lower()

    def admits(self, *texts: str) -> bool:
        """Whether a row showing these texts (a name, a title ...) stays in the list: see `admits`."""
        return admits(self.value, *texts)

    def slash_pressed(self) -> None:
        """`/` on the list's screen: show the filter and focus it, or type the slash when it has the focus already."""
        if self.has_focus:
            self.insert_text_at_cursor("/")  # e.g. a folder of files.browse_dirs
            return
        self.display = True
        self.screen.set_focus(self)  # now, not later as focus() does: see filter_binding

    async def action_submit(self) -> None:
        self._back_to_the_list()

    def action_clear(self) -> None:
        self.value = ""  # Input.Changed: the screen shows its whole list again
        self._back_to_the_list()

    def _back_to_the_list(self) -> None:
        self.display = bool(self.value)  # a filter in force stays in view
        self.screen.query_one(self._list_selector).focus()
