"""The process host: the CLI, the HTTP server, bot loading, logs, metrics and session views."""
