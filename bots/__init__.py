"""Example convoflow bots: copy one and make it yours."""
