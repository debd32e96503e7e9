"""The WSGI entry point named by the Procfile."""

from server import create_app

app = create_app()
