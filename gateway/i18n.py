"""The words of the pages, zh-CN by default and English on request (cookie ``cg_lang``).

Templates call ``_("key")``; a key missing from :data:`MESSAGES` is a programming error that
``tests/test_i18n.py`` catches by rendering every page in both languages. Add the words a Chinese
bank's staff use (see the glossary), one entry per key: ``key: (zh-CN, English)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aiohttp import web

LANGS = ("zh-CN", "en")
DEFAULT_LANG = "zh-CN"
LANG_COOKIE = "cg_lang"

MESSAGES: dict[str, tuple[str, str]] = {
    "app.name": ("客户联络网关", "Contact gateway"),
    "nav.agent": ("坐席工作台", "Agent desktop"),
    "nav.console": ("概览", "Overview"),
    "nav.interactions": ("接触记录", "Contact log"),
    "nav.qa": ("质检", "Quality review"),
    "nav.audit": ("审计", "Audit"),
    "nav.logout": ("退出登录", "Log out"),
    "nav.lang_other": ("English", "中文"),
    "login.title": ("登录", "Log in"),
    "login.name": ("用户名", "User name"),
    "login.password": ("密码", "Password"),
    "login.submit": ("登录", "Log in"),
    "login.failed": ("用户名或密码错误，或账户已停用。", "Wrong user name or password, or the account is disabled."),
    "login.throttled": ("登录失败次数过多，请稍后再试。", "Too many failed logins; try again later."),
    "login.expired": ("会话已过期，请重新登录。", "Your session has ended; please log in again."),
    "login.bad_form": ("表单已失效，请重新提交。", "The form has expired; please submit it again."),
    "logout.title": ("退出登录", "Log out"),
    "logout.confirm": ("确认退出登录？", "Log out now?"),
    "logout.done": ("您已退出登录。", "You have logged out."),
    "role.agent": ("坐席", "Agent"),
    "role.supervisor": ("班组长", "Supervisor"),
    "role.admin": ("管理员", "Administrator"),
}


def lang_of(request: web.Request) -> str:
    lang = request.cookies.get(LANG_COOKIE, "")
    return lang if lang in LANGS else DEFAULT_LANG


def translator(lang: str, extra: Mapping[str, tuple[str, str]] | None = None) -> Callable[[str], str]:
    index = LANGS.index(lang) if lang in LANGS else 0

    def gettext(key: str) -> str:
        entry = MESSAGES.get(key) or (extra or {}).get(key)
        if entry is None:
            raise KeyError(f"no message {key!r} in gateway.i18n.MESSAGES")
        return entry[index]

    return gettext
