"""A recording SMTP server that can misbehave on demand: slow, refusing, or holding its
reply to DATA until the test has killed the sender.

Only the server misbehaves: notify-svc runs unchanged and sees what it would see from a
real provider having a bad day.
"""

from __future__ import annotations

import asyncio
import threading

from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.smtp import MailServer, _Recorder


class _FaultyRecorder(_Recorder):
    """The recorder, with a mode: ``ok``, ``slow`` (a delay before each 250), ``refuse``
    (a 4xx, nothing kept) or ``hold`` (the next message is kept, its 250 waits for
    ``release``)."""

    def __init__(self) -> None:
        super().__init__()
        self.mode = "ok"
        self.delay_s = 0.0
        self.refused = 0
        self.held = threading.Event()
        self._release: asyncio.Event | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.mode == "refuse":
            self.refused += 1
            return "451 4.3.0 Mailbox temporarily unavailable, try again later"
        if self.mode == "slow":
            await asyncio.sleep(self.delay_s)
        if self.mode != "hold":
            return await super().handle_DATA(server, session, envelope)
        self.mode = "ok"  # one message only: the one in flight when the sender dies
        # Kept at once, as a provider that has the data delivers it whatever became of the
        # sender; only the reply waits (aiosmtpd cancels the handler when the sender dies).
        reply = await super().handle_DATA(server, session, envelope)
        self._release = asyncio.Event()
        self.held.set()
        await self._release.wait()
        return reply


class FaultyMailServer(MailServer):
    """``MailServer`` whose behaviour the fault suite switches while notify-svc sends."""

    def __init__(self) -> None:
        super().__init__()
        self._faulty = _FaultyRecorder()
        self._recorder = self._faulty

    @property
    def refused(self) -> int:
        """DATA commands answered with 4xx so far."""
        return self._faulty.refused

    def behave(self, mode: str, delay_s: float = 0.0) -> None:
        """``ok``, ``slow`` (``delay_s`` before each 250) or ``refuse`` (451 to every DATA)."""
        self._faulty.delay_s = delay_s
        self._faulty.mode = mode

    def hold_next(self) -> None:
        """Hold the reply to the next DATA until ``release``."""
        self._faulty.held.clear()
        self._faulty.mode = "hold"

    def wait_held(self, timeout_s: float) -> bool:
        """Whether a message is being held (waits up to ``timeout_s``)."""
        return self._faulty.held.wait(timeout_s)

    def release(self) -> None:
        """Answer the held message's 250 (to a sender that may be gone)."""
        release = self._faulty._release
        if self._loop is not None and release is not None:
            self._loop.call_soon_threadsafe(release.set)
