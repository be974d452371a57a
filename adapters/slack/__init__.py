"""The Slack channel, on slack-bolt."""
