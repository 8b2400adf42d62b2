"""Persistent state: SQLAlchemy models, sessions and Alembic migrations."""
