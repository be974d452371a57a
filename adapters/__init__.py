"""Channels that carry convoflow conversations: console, Telegram, Slack, and the HTTP server."""
