"""Alembic migrations (Flask-Migrate). The schema changes only through a new revision here."""
