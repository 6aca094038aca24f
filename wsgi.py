"""Entry point for any WSGI server: `gunicorn wsgi:app`."""

from authserver import create_app
from authserver.memory import release_large_buffers

release_large_buffers()  # argon2's 19 MiB buffers go back to the system after each hash (authserver/memory.py)
app = create_app()
