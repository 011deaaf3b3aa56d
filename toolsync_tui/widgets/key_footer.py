"""The footer of every screen: Textual's Footer without its leak of old keys.

Footer.compose() binds each FooterKey's `compact` to the footer (data_bind), which adds a watcher on the footer
holding the key. Textual drops watchers of removed nodes only when the watched value changes, and `compact` never
does: every recompose (each time a screen returns to the top) kept the old keys alive, ~600 objects a key, which
lengthened every full garbage collection. This footer forgets the watchers of keys it no longer shows.
"""

from __future__ import annotations

from textual.dom import DOMNode
from textual.widgets import Footer


class KeyFooter(Footer):
    async def recompose(self) -> None:
        await super().recompose()
        watchers: dict[str, list[tuple[DOMNode, object]]] = getattr(self, "__watchers", {})
        for name, watching in watchers.items():
            watchers[name] = [(node, callback) for node, callback in watching if node.is_attached]
