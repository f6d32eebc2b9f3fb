"""Storage of the notification server: SQLAlchemy 2 models, engine and Alembic migrations.

Only the NS imports this package; task servers and agents reach the data through the NS API.
"""
