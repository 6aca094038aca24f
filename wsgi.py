"""Entry point for any WSGI server: `gunicorn wsgi:app`."""

from authserver import create_app

app = create_app()
