"""The Slack channel, on slack-bolt: `channel` (the channel: Bolt's app, its routes and posts),
`events` (Slack payloads as convoflow updates), `render` (replies as Slack messages), `oauth`
(installs into many workspaces) and `installs` (where those installs are kept)."""
