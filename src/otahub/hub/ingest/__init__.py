"""Device reports made durable before their acknowledgement, applied behind it."""

from otahub.hub.ingest.journal import Entry, IngestJournal

__all__ = ["Entry", "IngestJournal"]
