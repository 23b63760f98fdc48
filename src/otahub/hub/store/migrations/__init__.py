"""Alembic migrations of the hub database (``otahub serve`` applies them at start)."""
