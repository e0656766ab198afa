"""Where the client keeps its session between runs: a 0600 JSON file in the config dir."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_config_path

from .matrix import Session

APP_NAME = "parley-tui"


def default_session_path() -> Path:
    return user_config_path(APP_NAME, appauthor=False) / "session.json"


class SessionStore:
    """Loads and saves the :class:`Session`; the file is only ever readable by its owner."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_session_path()

    def load(self) -> Session | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return Session.from_json(data)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, session: Session | None) -> None:
        """Write ``session`` (or delete the file for None) atomically with mode 0600."""
        if session is None:
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = self.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(session.to_json(), handle, indent=2)
        os.chmod(temporary, 0o600)  # O_CREAT's mode does not apply to an existing file
        os.replace(temporary, self.path)


@dataclass
class Settings:
    """User preferences from ``settings.json`` beside the session (all optional).

    ``desktop_notifications``: popups via ``notify-send`` for mentions and DMs.
    ``downloads_dir``: where saved files go (default ``~/Downloads``, else the config dir).
    """

    desktop_notifications: bool = False
    downloads_dir: str | None = None

    @classmethod
    def load(cls, path: Path | None = None) -> Settings:
        path = path or user_config_path(APP_NAME, appauthor=False) / "settings.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        folder = data.get("downloads_dir")
        return cls(desktop_notifications=data.get("desktop_notifications") is True,
                   downloads_dir=folder if isinstance(folder, str) and folder else None)
