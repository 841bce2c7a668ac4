"""Times as sshpin writes them: RFC 3339 in UTC, to the second (``2026-11-22T10:00:00Z``).

The one formatter: the provider's documents, the history, the cache listing and every message
that names a time use it. Parsing what a provider wrote is ``trust/document.parse_timestamp``.
"""

import time


def rfc3339(ts: float) -> str:
    """``2026-11-22T10:00:00Z`` for a POSIX time."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
