"""Alembic environment: the connection is handed in by ``taskfleet.storage.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from taskfleet.storage.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    # `alembic revision --autogenerate` during development: a scratch SQLite file.
    url = config.get_main_option("sqlalchemy.url") or "sqlite:///./.alembic-scratch.db"
    with create_engine(url).connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
