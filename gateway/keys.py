"""Every typed application key, in one module. Views read them once; deeper code gets arguments."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from adapters.ami_client import AmiClient
    from adapters.imap_poller import ImapPoller
    from adapters.segment import SegmentMapping
    from gateway.clock import Clock
    from gateway.events.publish import Publisher
    from gateway.events.sink import EventSink
    from gateway.metrics import Metrics
    from gateway.openapi import ApiRegistry
    from gateway.settings import Settings

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
API: web.AppKey[ApiRegistry] = web.AppKey("api")
DATABASE_DSN: web.AppKey[str] = web.AppKey("database_dsn")
REDIS_URL: web.AppKey[str] = web.AppKey("redis_url")
DB: web.AppKey[asyncpg.Pool] = web.AppKey("db")
REDIS: web.AppKey[Redis] = web.AppKey("redis")
INGEST: web.AppKey[EventSink] = web.AppKey("ingest")
PUBLISHER: web.AppKey[Publisher] = web.AppKey("publisher")

if TYPE_CHECKING:
    from gateway.customers.service import CustomerService
    from gateway.identity import IdentityHasher

IDENTITY: web.AppKey[IdentityHasher] = web.AppKey("identity")
CUSTOMERS: web.AppKey[CustomerService] = web.AppKey("customers")

if TYPE_CHECKING:
    from gateway.screenpop.push import PopHub
    from gateway.screenpop.service import ScreenPopService

SCREENPOP: web.AppKey[ScreenPopService] = web.AppKey("screenpop")
POP_HUB: web.AppKey[PopHub] = web.AppKey("pop_hub")

if TYPE_CHECKING:
    from gateway.users.service import UserService
    from gateway.users.sessions import LoginThrottle, SessionStore

USERS: web.AppKey[UserService] = web.AppKey("users")
SESSIONS: web.AppKey[SessionStore] = web.AppKey("sessions")
LOGIN_THROTTLE: web.AppKey[LoginThrottle] = web.AppKey("login_throttle")

if TYPE_CHECKING:
    from gateway.console.service import ConsoleService

CONSOLE: web.AppKey[ConsoleService] = web.AppKey("console")

SEGMENT_MAPPING: web.AppKey[SegmentMapping] = web.AppKey("segment_mapping")
AMI: web.AppKey[AmiClient] = web.AppKey("ami")
IMAP_POLLER: web.AppKey[ImapPoller] = web.AppKey("imap_poller")
