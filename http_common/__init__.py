"""What both doors share and nothing else: the one JSON error shape and the typed way to reach
the chat service. Imports only the domain below it, never a door or the app factory."""
