"""A customer's *version*: a token that changes whenever anything a summary of the customer shows changes.

It is the profile's ``updated_at`` (core banking replaces the whole document), and over the customer's
interactions their number, the sum of their event counts and their latest update (an event committed to
any of them, or a link or unlink, changes it). Counts are commit-order independent, unlike ids or
timestamps assigned before commit. Read it *before* the data it guards: if anything commits in between,
the token kept with the data is already stale and the next reader rebuilds — never the reverse.

The screen-pop's summary cache (:mod:`gateway.screenpop.store`) is validated against it, and the early
link of a ringing call (:mod:`gateway.events.store`) reads it in the same statement, so that a pop needs no
second round trip to know whether a cached summary is current.
"""

from __future__ import annotations

import datetime as dt

# Columns updated_at, n, events, last of customer c (a LATERAL join over its interactions).
VERSION_LATERAL = """
LATERAL (SELECT count(*) AS n, coalesce(sum(event_count), 0) AS events, max(updated_at) AS last
         FROM interactions WHERE customer_id = c.id) v
"""


def version_token(updated_at: dt.datetime, n: int, events: int, last: dt.datetime | None) -> str:
    return f"{updated_at.isoformat()}|{n}|{events}|{last.isoformat() if last else '-'}"
