"""The WSGI entry point named by the Procfile. Background work is not started here (this module
may be imported by a preloading master); gunicorn.conf.py's post_worker_init starts it."""

from server import create_app

app = create_app(start_background=False)
