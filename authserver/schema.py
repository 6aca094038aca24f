"""The schema's migrations (Alembic, through Flask-Migrate), for the CLI and the tests.

A serving worker never migrates, so it never imports Alembic (about 12 MB of a worker's
memory): only `authserver db …` (the CLI registers the `db` commands' configuration on
its app) and the callers of `upgrade` and `downgrade` below load this module.
"""

from __future__ import annotations

from pathlib import Path

import flask_migrate
from flask import Flask, current_app

import migrations

from .extensions import db

migrate = flask_migrate.Migrate(directory=str(Path(migrations.__file__).resolve().parent), render_as_batch=True)


def register(app: Flask) -> Flask:
    """Give `app` the migrations' configuration that `authserver db upgrade|downgrade|current` use."""
    if "migrate" not in app.extensions:
        migrate.init_app(app, db)
    return app


def upgrade(revision: str = "head") -> None:
    """Migrate the current app's database up to `revision`."""
    register(current_app)
    flask_migrate.upgrade(revision=revision)


def current() -> None:
    """Print the revision the current app's database is at."""
    register(current_app)
    flask_migrate.current()


def downgrade(revision: str) -> None:
    """Migrate the current app's database down to `revision` ("base": empty)."""
    register(current_app)
    flask_migrate.downgrade(revision=revision)
