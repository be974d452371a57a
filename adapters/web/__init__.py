"""The web chat channel: a bot on a web page, over `/web/*` routes of the shared server."""
