"""The console channel: chat with a bot in a terminal."""
