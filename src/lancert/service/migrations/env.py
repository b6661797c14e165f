"""Alembic environment: always run from :meth:`lancert.service.database.Database.migrate`, which passes
an open connection (no alembic.ini, no URL of its own)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from lancert.service.models import METADATA

connection = context.config.attributes["connection"]
lock_key = context.config.attributes.get("lock_key")
context.configure(connection=connection, target_metadata=METADATA, render_as_batch=True)
with context.begin_transaction():
    if lock_key is not None:
        # Two instances starting together: the second waits here, then finds the schema up to date.
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key})
    context.run_migrations()
