"""The TUI's widgets: room list, timeline, composer and the status line."""

from .composer import Composer
from .inline_image import InlineImage
from .member_list import MemberList
from .room_list import RoomList
from .status import StatusBar
from .timeline import Timeline

__all__ = ["Composer", "InlineImage", "MemberList", "RoomList", "StatusBar", "Timeline"]
