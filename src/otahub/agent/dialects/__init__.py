"""One client per device dialect, each built on :mod:`otahub.protocols`."""
