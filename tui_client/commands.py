"""Slash commands typed in the composer: the table of what exists and a parser.

Parsing is pure; :class:`tui_client.app.ParleyApp` carries the commands out.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

#: name -> (arguments, what it does). The help screen shows this table.
COMMANDS: dict[str, tuple[str, str]] = {
    "join": ("<#alias|!room_id>", "join a room"),
    "leave": ("", "leave the current room"),
    "invite": ("<@user:server>", "invite a user to the current room"),
    "kick": ("<@user:server> [reason]", "remove a user from the current room"),
    "ban": ("<@user:server> [reason]", "ban a user from the current room"),
    "topic": ("<text>", "set the room topic"),
    "name": ("<text>", "set the room name"),
    "nick": ("<name>", "set your display name"),
    "me": ("<action>", "send an emote: * you <action>"),
    "dm": ("<@user:server>", "open (or create) a direct chat"),
    "create": ("[--public] <name> [@invitee ...]", "create a group room"),
    "upload": ("<path>", "upload and send a file or image"),
    "search": ("<words>", "search messages in all your rooms"),
    "help": ("", "show keys and commands"),
}


@dataclass(frozen=True)
class Command:
    """A parsed command: ``/kick @bob:x being rude`` -> ``Command("kick", "@bob:x being rude")``."""

    name: str
    argument: str

    @property
    def words(self) -> list[str]:
        try:
            return shlex.split(self.argument)
        except ValueError:
            return self.argument.split()

    def first_and_rest(self) -> tuple[str, str]:
        first, _, rest = self.argument.partition(" ")
        return first, rest.strip()


class CommandError(ValueError):
    """The text looked like a command but is not a valid one (message for the user)."""


def parse_command(text: str) -> Command | None:
    """A :class:`Command` for ``/name args``; None for a normal message.

    ``//text`` sends ``/text`` literally (the app strips one slash).
    """
    if not text.startswith("/") or text.startswith("//"):
        return None
    name, _, argument = text[1:].partition(" ")
    name = name.strip().lower()
    if name not in COMMANDS:
        raise CommandError(f"unknown command /{name} — /help lists them")
    usage, _ = COMMANDS[name]
    argument = argument.strip()
    if usage.startswith("<") and not argument:
        raise CommandError(f"usage: /{name} {usage}")
    return Command(name, argument)
