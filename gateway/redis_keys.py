"""Every Redis key and channel name the gateway uses, in one place."""

from __future__ import annotations

PREFIX = "cg:"

READY_PROBE = PREFIX + "ready"


def customer_channel(customer_id: str) -> str:
    """Pub/sub channel of one customer's new events."""
    return f"{PREFIX}events:customer:{customer_id}"


def agent_channel(agent_id: str) -> str:
    """Pub/sub channel of events addressed to one agent (screen-pop triggers)."""
    return f"{PREFIX}events:agent:{agent_id}"


ALL_EVENTS_CHANNEL = PREFIX + "events:all"


def summary_cache(customer_id: str) -> str:
    """Cached screen-pop summary of one customer."""
    return f"{PREFIX}summary:{customer_id}"


def current_pop(agent_id: str) -> str:
    """The current screen-pop of an agent, for a desktop that reconnects."""
    return f"{PREFIX}pop:{agent_id}"


def session(session_id: str) -> str:
    return f"{PREFIX}session:{session_id}"


def login_throttle(key: str) -> str:
    return f"{PREFIX}throttle:login:{key}"


def pop_channel(agent_id: str) -> str:
    """Pub/sub channel of built pops for one agent: whichever instance holds the agent's socket delivers."""
    return f"{PREFIX}popch:{agent_id}"


def hub_channel(instance: str) -> str:
    """A pop hub's own channel: keeps its pub/sub connection listening while it holds no desktop."""
    return f"{PREFIX}hub:{instance}"


def user_sessions(name: str) -> str:
    """The set of one user's session digests (so that disabling the user ends them all)."""
    return f"{PREFIX}user-sessions:{name}"
