"""The top line of every screen: which site toolsync is connected to, or why it is not."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from toolsync_tui.views.site_status import SiteStatus


class SiteBar(Horizontal):
    """Follows the app's `site_status` reactive, so every screen shows the same, current site."""

    def compose(self) -> ComposeResult:
        yield Static(id="site-badge", markup=False)
        yield Static(id="site-detail", markup=False)

    def on_mount(self) -> None:
        self.watch(self.app, "site_status", self._show)

    def _show(self, status: SiteStatus) -> None:
        self.query_one("#site-badge", Static).update(f" {status.badge} ")
        self.query_one("#site-detail", Static).update(status.detail)
        for state in ("connecting", "ready", "error"):
            self.set_class(status.state == state, f"-{state}")
        self.set_class(status.badge == "SANDBOX", "-sandbox")
