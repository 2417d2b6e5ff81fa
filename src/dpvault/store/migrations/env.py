"""Alembic environment: dpvault always passes an open connection (see ``store.engines.migrate``)."""

from alembic import context

from dpvault.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
