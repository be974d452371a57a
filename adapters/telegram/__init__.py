"""The Telegram channel, on python-telegram-bot: `channel` (the channel, its options and sends),
`updates` (Telegram updates as convoflow updates), `render` (replies as Bot API calls) and `request`
(PTB's HTTP layer on aiohttp)."""

from convoflow.adapters.telegram.channel import TelegramChannel, TelegramOptions

__all__ = ["TelegramChannel", "TelegramOptions"]
