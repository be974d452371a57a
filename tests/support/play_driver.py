"""Drive one session's Play turn by turn with a manual clock, keeping its state and mailbox as JSON
text between turns (what a store keeps), either resuming the suspended play (warm) or replaying
from the text every turn (cold, as after a restart)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from convoflow import BaseDialog, ManualClock, SessionKey, state_from_dict
from convoflow.mailbox import Fired, Mailbox, PendingWait, Signal
from convoflow.messages import as_message
from convoflow.player import Play
from convoflow.replay import DialogState

KEY = SessionKey("test:1", "timers")


@dataclass
class PlayDriver:
    dialog: Callable[[], BaseDialog[Any]]
    clock: ManualClock = field(default_factory=ManualClock)
    cold: bool = False
    """Replay from the stored text every turn instead of resuming the suspended play."""
    state_text: str | None = None
    mailbox_text: str = '{"answers": [], "events": []}'
    pending: PendingWait | None = None
    finished: bool = False
    timed_out: bool = False
    said: list[str] = field(default_factory=list)
    """Every message sent so far, as text."""
    _play: Play | None = None

    async def turn(self, arrival: Any = None) -> list[str]:
        """One turn with `arrival` (an answer, a Signal or a Fired); returns what the bot said."""
        if self._play is None or self.cold or self.finished:
            top = self.dialog()
            state = DialogState(top.version, top.name) if self.state_text is None or self.finished else (
                state_from_dict(json.loads(self.state_text)))
            self._play = Play(top, state, key=KEY, clock=self.clock)
        kept = json.loads(self.mailbox_text)
        play = self._play
        play.begin(arrival, Mailbox(kept["answers"], kept["events"], keep_events=3600))
        self.finished = await play.step_async()
        self.state_text = json.dumps(play.state.to_dict())
        self.mailbox_text = json.dumps({"answers": play.mailbox.answers, "events": play.mailbox.events})
        self.pending, self.timed_out = play.pending, play.timed_out
        said = [_text(message) for message in play.outbox]
        self.said += said
        return said

    async def say(self, text: str) -> list[str]:
        return await self.turn(text)

    async def signal(self, name: str, data: Any = None, event_id: str = "e1") -> list[str]:
        return await self.turn(Signal(name, data, event_id))

    async def advance(self, seconds: float) -> list[str]:
        """Move the clock, firing each timer that falls due on the way, in order."""
        target = self.clock.now() + seconds
        said: list[str] = []
        while self.pending is not None and self.pending.due is not None and self.pending.due <= target:
            self.clock.set(max(self.clock.now(), self.pending.due))
            said += await self.turn(Fired(self.pending.due))
        self.clock.set(target)
        return said

    @property
    def state(self) -> dict[str, Any]:
        assert self.state_text is not None
        return json.loads(self.state_text)

    @property
    def kept(self) -> dict[str, Any]:
        return json.loads(self.mailbox_text)


def _text(message: Any) -> str:
    shown = as_message(message)
    return getattr(shown, "text", repr(shown))
