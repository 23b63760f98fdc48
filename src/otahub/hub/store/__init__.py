"""Persistence: the database (SQLAlchemy models, migrations) and the blob store."""
