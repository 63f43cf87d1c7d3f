"""Screen-pop endpoints for desktops: the pop by lookup, and the agent's live push.

- ``GET /v1/screenpop?phone=…`` (or another identifier kind, or ``interaction_id``, or ``agent_id``
  for the agent's current pop): a pop as JSON, for desktops of other vendors. API key with scope
  ``read``, or a logged-in user. Audited.
- ``GET /v1/agents/{agent_id}/stream``: WebSocket; frames ``{"type": "pop", "pop": {…}}``,
  ``{"type": "call", …}`` (the call's state) and ``{"type": "pop.cleared"}``. On connect the
  current pop is sent first (a reconnecting desktop picks up where it was).
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from gateway import keys
from gateway.errors import BadRequest, Forbidden, NotFound, ValidationFailed
from gateway.events.ingest import interaction_uuid
from gateway.identity import KINDS
from gateway.middleware import request_id_of
from gateway.openapi import ApiRegistry, add_route, json_response
from gateway.screenpop.model import Pop
from gateway.screenpop.service import pop_json
from gateway.views.access import READERS, Principal, require_reader, sources

HEARTBEAT_SECONDS = 25.0


async def screen_principal(request: web.Request) -> Principal:
    """A logged-in agent or supervisor, or else a source with scope ``read``."""
    return await require_reader(request, "read")


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


async def lookup(request: web.Request, principal: Principal) -> Pop:
    """The pop a query asks for (exactly one of an identifier kind, ``interaction_id``, ``agent_id``)."""
    service = request.app[keys.SCREENPOP]
    q = request.query
    given = [k for k in q if k not in ("source",)]
    for k in given:
        if k not in KINDS and k not in ("interaction_id", "agent_id"):
            raise ValidationFailed.field(k, "unknown parameter (an identifier kind, interaction_id or agent_id)")
    if len(given) != 1:
        raise ValidationFailed.field("query", "give exactly one of: an identifier (e.g. phone), interaction_id, "
                                              "agent_id")
    (name,) = given
    value = q[name]
    if not value:
        raise ValidationFailed.field(name, "empty")
    pop: Pop | None
    if name == "interaction_id":
        iid = value
        if "source" in q:  # the channel's own id (e.g. the CTI linked id) with its source
            iid = str(interaction_uuid(q["source"], value))
        pop = await service.pop_for_interaction(iid)
        if pop is None:
            raise NotFound("no such interaction")
    elif name == "agent_id":
        frame = await service.current_frame(value)
        if frame is None:
            raise NotFound("this agent has no current pop")
        pop = msgspec.json.decode(frame, type=_Frame).pop
    else:
        pop = await service.pop_for_identifier(name, value)
    await service.audit_pop(pop, actor=principal.actor, role=principal.role, request_id=request_id_of(request))
    return pop


class _Frame(msgspec.Struct):
    type: str
    pop: Pop


async def get_screenpop(request: web.Request) -> web.Response:
    principal = await screen_principal(request)
    return _json(pop_json(await lookup(request, principal)))


async def agent_stream(request: web.Request) -> web.StreamResponse:
    agent_id = request.match_info["agent_id"]
    await stream_principal(request, agent_id)
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_SECONDS)
    if not ws.can_prepare(request).ok:
        raise BadRequest("this endpoint is a WebSocket: send an Upgrade request",
                         errors=[{"field": "Upgrade", "message": "required"}])
    hub = request.app[keys.POP_HUB]
    service = request.app[keys.SCREENPOP]
    await ws.prepare(request)
    await hub.attach(agent_id, ws)  # before reading the current pop, so nothing published meanwhile is lost
    try:
        current = await service.current_frame(agent_id)
        if current:
            await ws.send_str(current.decode())
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and msg.data == "ping":
                await ws.send_str('{"type":"pong"}')
    finally:
        hub.detach(agent_id, ws)
    return ws


async def stream_principal(request: web.Request, agent_id: str) -> Principal:
    """Who may watch an agent's stream: that agent, a supervisor, or a source with scope ``read``
    (other vendors' desktops)."""
    principal = await require_reader(request, "read")
    if principal.role == "agent" and principal.agent_id != agent_id:
        raise Forbidden("an agent watches only their own stream")
    return principal


_OBJ: dict[str, Any] = {"type": "object"}
POP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["pop_id", "state", "built_at", "url", "candidates"],
    "properties": {
        "pop_id": {"type": "string"},
        "state": {"enum": ["identified", "ambiguous", "unidentified"]},
        "agent_id": {"type": ["string", "null"]},
        "interaction_id": {"type": ["string", "null"]},
        "occurred_at": {"type": ["string", "null"], "format": "date-time"},
        "built_at": {"type": "string", "format": "date-time"},
        "url": {"type": "string"},
        "call": {"type": ["object", "null"]},
        "summary": {"type": ["object", "null"], "description": "who / has / can / did / alerts (identified only)",
                    "properties": {"who": _OBJ, "has": _OBJ, "can": _OBJ, "did": _OBJ,
                                   "alerts": {"type": "array", "items": _OBJ}}},
        "candidates": {"type": "array", "items": _OBJ},
    },
}
_SECURITY: list[dict[str, list[str]]] = [{"apiKey": []}, {"bearer": []}]


def setup_routes(app: web.Application, api: ApiRegistry) -> None:
    params = [{"name": k, "in": "query", "required": False, "schema": {"type": "string"},
               "description": f"a {k} (give exactly one identifier, interaction_id or agent_id)"} for k in KINDS]
    params += [
        {"name": "interaction_id", "in": "query", "schema": {"type": "string"},
         "description": "the interaction's id (or the channel's own id, with source)"},
        {"name": "source", "in": "query", "schema": {"type": "string"},
         "description": "with interaction_id: the source whose own interaction id it is"},
        {"name": "agent_id", "in": "query", "schema": {"type": "string"}, "description": "the agent's current pop"},
    ]
    add_route(app, api, "GET", "/v1/screenpop", get_screenpop, {
        "operationId": "getScreenPop", "summary": "The screen-pop for a caller, an interaction or an agent (audited)",
        "tags": ["screenpop"], "security": _SECURITY, "parameters": params,
        "responses": {"200": json_response("The pop", POP_SCHEMA)},
    }, access=sources("read", roles=READERS))
    add_route(app, api, "GET", "/v1/agents/{agent_id}/stream", agent_stream, {
        "operationId": "agentStream", "summary": "WebSocket: live pops for one agent's desktop",
        "description": "Upgrade to a WebSocket. Frames: {type: pop, pop}, {type: call, event, interaction_id}, "
                       "{type: pop.cleared}. The current pop is sent first.",
        "tags": ["screenpop"], "security": _SECURITY,
        "parameters": [{"name": "agent_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"101": {"description": "Switching to the WebSocket protocol"}},
    }, access=sources("read", roles=READERS))
