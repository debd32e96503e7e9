"""The event door: the database webhook that announces each new user message."""
