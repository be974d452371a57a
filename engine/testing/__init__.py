"""convoflow's testing kit: drive a bot in a test (`Chat`), run transcript files, and the pytest
plugin's `chat` fixture (registered through the `pytest11` entry point, so installing convoflow
is all it takes)."""

from convoflow.testing.chat import Chat, ChatError, FlowFailed, Replies
from convoflow.testing.histories import HistoryFailed, replay_history
from convoflow.testing.transcripts import Transcript, TranscriptError, TranscriptFailed, run_transcript

__all__ = ["Chat", "ChatError", "FlowFailed", "HistoryFailed", "Replies", "Transcript", "TranscriptError",
           "TranscriptFailed", "replay_history", "run_transcript"]
