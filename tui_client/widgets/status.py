"""The one-line status bar: connection state, who you are, the open room and its topic."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ..matrix import ConnectionStatus

_STATUS_STYLE = {
    ConnectionStatus.SYNCING: ("●", "green"),
    ConnectionStatus.CONNECTING: ("◌", "yellow"),
    ConnectionStatus.RECONNECTING: ("◌", "red"),
    ConnectionStatus.OFFLINE: ("○", "red"),
    ConnectionStatus.LOGGED_OUT: ("○", "red"),
}


class StatusBar(Static):
    """Connection status, user id, and the room name and topic."""

    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        background: $panel;
        color: $text;
    }
    """

    def show(self, status: ConnectionStatus, user_id: str, room_name: str = "", topic: str = "",
             retry_in: float | None = None, transport: str | None = None) -> None:
        """``transport`` names the sync source; only the WebSocket is named (long-poll is the norm)."""
        symbol, colour = _STATUS_STYLE[status]
        text = Text(f" {symbol} ", style=f"bold {colour}")
        label = status.value
        if status is ConnectionStatus.SYNCING and transport == "websocket":
            label += " · websocket"
        if status is ConnectionStatus.RECONNECTING and retry_in:
            label += f" (retry in {retry_in:.0f}s)"
        text.append(label, style=colour)
        text.append(f"  {user_id}", style="dim")
        if room_name:
            text.append("  │  ", style="dim")
            text.append(room_name, style="bold")
        if topic:
            text.append(f" — {topic}", style="italic dim")
        text.truncate(max(self.size.width or self.app.size.width, 20), overflow="ellipsis")
        self.update(text)
