"""Desktop notifications through ``notify-send``, when installed and wanted.

The bell always rings for mentions and direct messages in rooms out of view; this adds
a desktop popup on top, behind the ``desktop_notifications`` setting. The command runs
detached with a short timeout; failures are ignored (a popup is a nicety).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable, Sequence

Runner = Callable[[Sequence[str]], Awaitable[None]]


async def run_detached(argv: Sequence[str]) -> None:
    """Run ``argv`` without a shell, output discarded, killed after 5 seconds."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        await asyncio.wait_for(process.wait(), 5)
    except TimeoutError:
        process.kill()


def notify_send_argv(command: str, title: str, body: str, urgent: bool) -> list[str]:
    """The ``notify-send`` call; ``--`` keeps a body starting with ``-`` from being an option."""
    return [command, "--app-name=Parley", f"--urgency={'critical' if urgent else 'normal'}", "--", title, body]


class DesktopNotifier:
    """Sends popups when ``enabled`` and ``notify-send`` exists (``command`` overrides the lookup)."""

    def __init__(self, enabled: bool, command: str | None = None, runner: Runner = run_detached) -> None:
        self.command = command if command is not None else shutil.which("notify-send")
        self.enabled = enabled
        self.runner = runner

    @property
    def available(self) -> bool:
        return self.enabled and bool(self.command)

    async def notify(self, title: str, body: str, urgent: bool = False) -> bool:
        """Show a popup; False when off, missing or failed."""
        if not self.available or self.command is None:
            return False
        try:
            await self.runner(notify_send_argv(self.command, title, body, urgent))
        except OSError:
            return False
        return True
