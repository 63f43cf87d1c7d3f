"""The explicit registry of channel adapters: no import-time discovery.

Each entry names a native format, the channel it feeds, the module holding its
pure ``parse`` and where its fixtures live; ``tests/test_adapters_complete.py``
checks that every channel with an entry has golden fixtures. Add an adapter by
adding one line here.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class AdapterInfo:
    name: str              # stable name, also the quarantine's ``adapter`` column
    channel: str           # canonical channel it produces
    module: str            # module with the pure parse function(s)
    transport: str         # "http" (a route), "tcp" (a client we run) or "imap"
    fixtures: str          # directory under tests/fixtures with native samples and expected events


ADAPTERS: tuple[AdapterInfo, ...] = (
    AdapterInfo("online_banking", "online_banking", "adapters.online_banking", "http", "online_banking"),
    AdapterInfo("segment", "mobile_banking", "adapters.segment", "http", "segment"),
    AdapterInfo("ami", "voice", "adapters.ami", "tcp", "ami"),
    AdapterInfo("amazon_connect", "voice", "adapters.amazon_connect", "http", "amazon_connect"),
    AdapterInfo("cti_webhook", "voice", "adapters.cti_webhook", "http", "cti_webhook"),
    AdapterInfo("email", "email", "adapters.email_mime", "http", "email"),
    AdapterInfo("imap", "email", "adapters.email_mime", "imap", "email"),
)


def by_name(name: str) -> AdapterInfo:
    for a in ADAPTERS:
        if a.name == name:
            return a
    raise KeyError(name)
