"""The TUI's widgets: room list, timeline, composer and the status line."""

from .composer import Composer
from .room_list import RoomList
from .status import StatusBar
from .timeline import Timeline

__all__ = ["Composer", "RoomList", "StatusBar", "Timeline"]
