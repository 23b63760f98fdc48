"""The hub's limit on open files, lifted to what the system allows at start.

Every MQTT connection holds a socket, and the usual soft limit (1,024)
would refuse a fleet past it with accept errors although the hard limit
(often far higher) allows more: the hub raises its soft limit to the hard
one, as servers with many connections do.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("otahub.hub")


def raise_open_files_limit() -> int:
    """Set the soft limit on open files to the hard one; returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard or soft == resource.RLIM_INFINITY:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:  # e.g. an infinite hard limit the kernel caps
        log.warning("open files stay limited to %d: %s", soft, exc)
        return soft
    log.info("open files limit raised from %d to %d", soft, hard)
    return hard
