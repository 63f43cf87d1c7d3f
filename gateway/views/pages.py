"""Rendering HTML pages: every template gets the request, the language and its words, the user, the CSRF token.

Use :func:`render_page` (or the :func:`page` decorator) instead of ``aiohttp_jinja2.render_template`` so
that ``base.html`` finds what it needs. (aiohttp_jinja2's context processors store their context under a
string request key, which aiohttp warns about; this does the same without one.)
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from gateway.i18n import lang_of, translator
from gateway.views.access import csrf_token, current_user


def page_context(request: web.Request) -> dict[str, Any]:
    lang = lang_of(request)
    return {"request": request, "lang": lang, "_": translator(lang), "user": current_user(request),
            "csrf_token": csrf_token(request)}


def render_page(template: str, request: web.Request, context: Mapping[str, Any] | None = None, *,
                status: int = 200) -> web.Response:
    response = aiohttp_jinja2.render_template(template, request, {**page_context(request), **(context or {})},
                                              status=status)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def page(template: str) -> Callable[[Callable[[web.Request], Awaitable[Mapping[str, Any]]]],
                                    Callable[[web.Request], Awaitable[web.Response]]]:
    """Decorate a view returning a context mapping: it renders ``template`` with it."""

    def wrap(view: Callable[[web.Request], Awaitable[Mapping[str, Any]]]) -> Callable[[web.Request],
                                                                                     Awaitable[web.Response]]:
        @functools.wraps(view)
        async def handler(request: web.Request) -> web.Response:
            return render_page(template, request, await view(request))

        return handler

    return wrap
