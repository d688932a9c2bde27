"""Alembic environment: the engine is handed in by ``engram.sql.migrate`` (no ini-file URL)."""

from alembic import context

from engram.sql.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
