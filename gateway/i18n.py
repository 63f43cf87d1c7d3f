"""The words of the pages, zh-CN by default and English on request (cookie ``cg_lang``).

Templates call ``_("key")``; a key missing from :data:`MESSAGES` is a programming error that
the console and access tests catch by rendering the pages in both languages. Add the words a Chinese
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
    # console: filters
    "none": ("无", "None"),
    "f.since": ("开始时间", "From"),
    "f.until": ("结束时间", "Until"),
    "f.apply": ("查询", "Apply"),
    "f.any": ("全部", "Any"),
    "f.channel": ("渠道", "Channel"),
    "f.kind": ("类型", "Type"),
    "f.queue": ("队列", "Queue"),
    "f.agent": ("坐席号", "Agent"),
    "f.customer": ("客户号", "Customer no."),
    "f.outcome": ("处理结果", "Outcome"),
    "f.identification": ("识别状态", "Identification"),
    "f.text": ("全文检索", "Search text"),
    "f.text_hint": ("主题、小结、邮件正文", "subject, notes, email text"),
    "f.sort": ("排序", "Sort"),
    "ch.voice": ("电话", "Voice"),
    "ch.online_banking": ("网银", "Online banking"),
    "ch.mobile_banking": ("手机银行", "Mobile banking"),
    "ch.email": ("邮件", "Email"),
    "ch.branch": ("网点", "Branch"),
    "ch.sms": ("短信", "SMS"),
    "ch.wechat": ("微信", "WeChat"),
    "ch.corporate_banking": ("企业网银", "Corporate banking"),
    "kind.call": ("通话", "Call"),
    "kind.session": ("会话", "Session"),
    "kind.thread": ("邮件往来", "Thread"),
    "kind.case": ("工单", "Case"),
    "kind.visit": ("到访", "Visit"),
    "id.identified": ("已识别", "Identified"),
    "id.ambiguous": ("多个候选", "Ambiguous"),
    "id.unidentified": ("未识别", "Unidentified"),
    "sort.-started_at": ("时间（新→旧）", "Newest first"),
    "sort.started_at": ("时间（旧→新）", "Oldest first"),
    "sort.-handle_seconds": ("处理时长（长→短）", "Longest handle time"),
    "sort.handle_seconds": ("处理时长（短→长）", "Shortest handle time"),
    "sort.-event_count": ("事件数（多→少）", "Most events"),
    # console: contact log and drill-down
    "log.export": ("导出 CSV", "Export CSV"),
    "log.started": ("开始时间", "Started"),
    "log.answered": ("接通时间", "Answered"),
    "log.ended": ("结束时间", "Ended"),
    "log.status": ("状态", "Status"),
    "log.handle": ("处理时长", "Handle time"),
    "log.reason": ("来电原因", "Reason"),
    "log.subject": ("主题", "Subject"),
    "log.events": ("事件数", "Events"),
    "log.empty": ("没有符合条件的接触记录。", "No interactions match."),
    "log.first": ("第一页", "First page"),
    "log.next": ("下一页", "Next page"),
    "detail.title": ("接触记录详情", "Interaction"),
    "detail.candidate": ("候选客户", "Candidate"),
    "detail.events": ("事件", "Events"),
    "detail.at": ("时间", "Time"),
    "detail.type": ("事件类型", "Type"),
    "detail.source": ("来源系统", "Source"),
    "detail.identifiers": ("标识（已脱敏）", "Identifiers (masked)"),
    "detail.attributes": ("附加信息", "Attributes"),
    "detail.links": ("关联记录", "Link history"),
    "detail.audit": ("查看此记录的审计日志", "Audit trail of this interaction"),
    # console: dashboard
    "dash.title": ("运营概览", "Overview"),
    "dash.total": ("接触总量", "Interactions"),
    "dash.offered": ("呼入量", "Calls offered"),
    "dash.answer_rate": ("接通率", "Answer rate"),
    "dash.service_level": ("服务水平", "Service level"),
    "dash.abandonment": ("呼损率", "Abandonment"),
    "dash.aht": ("平均处理时长", "Average handle time"),
    "dash.repeat": ("重复来电率", "Repeat contacts"),
    "dash.days": ("天内", " days"),
    "dash.fcr": ("首次解决率", "FCR"),
    "dash.unidentified": ("未识别率", "Unidentified"),
    "dash.volume": ("各渠道接触量", "Volume by channel"),
    "dash.per_hour": ("按小时", "per hour"),
    "dash.per_day": ("按天", "per day"),
    "dash.sum": ("合计", "Total"),
    "dash.by_channel": ("分渠道", "By channel"),
    "dash.complaints": ("未结投诉（按时长与时限）", "Open complaints by age against SLA"),
    "dash.age": ("已持续", "Age"),
    "dash.within_sla": ("时限内", "Within SLA"),
    "dash.breached": ("已超时", "Breached"),
    "dash.no_sla": ("无时限", "No SLA"),
    "dash.reasons": ("主要来电原因", "Top contact reasons"),
    "dash.qa": ("质检结果", "Quality review"),
    "dash.qa_by_agent": ("各坐席质检平均分", "QA score by agent"),
    "dash.qa_over_time": ("质检平均分趋势", "QA score over time"),
    "dash.notes": ("口径：接通率、服务水平、呼损率按呼入电话计算（服务水平 = 规定秒数内接通量 / 呼入量）；平均处理时长 = 接通至挂机；"
                   "重复来电 = 同一客户在所计渠道于规定天数内再次联络（首次解决率 = 1 − 重复来电率）；未识别率按全部接触计算；投诉按当前时间统计。",
                   "Definitions: answer rate, service level and abandonment are over inbound calls offered (service level = "
                   "answered within the threshold / offered); handle time is answer to hang-up; a repeat contact is the "
                   "same customer contacting again on a counted channel within the window (FCR = 1 − repeat rate); the "
                   "unidentified rate is over all interactions; complaints are as of now."),
    # console: quality review
    "qa.draw": ("抽取质检样本", "Draw a sample"),
    "qa.size": ("样本量", "Size"),
    "qa.draw_button": ("随机抽取", "Draw"),
    "qa.samples": ("质检样本", "Samples"),
    "qa.sample": ("样本", "Sample"),
    "qa.created": ("抽取时间", "Drawn at"),
    "qa.by": ("抽取人", "By"),
    "qa.criteria": ("抽取条件", "Criteria"),
    "qa.drawn": ("抽中", "Drawn"),
    "qa.scored": ("已评分", "Scored"),
    "qa.review": ("质检评分", "Review"),
    "qa.reviews": ("评分数", "Reviews"),
    "qa.average": ("平均分", "Average"),
    "qa.score": ("得分", "Score"),
    "qa.comment": ("评语", "Comment"),
    "qa.save": ("保存评分", "Save score"),
    "qa.status.pending": ("待评分", "Pending"),
    "qa.status.scored": ("已评分", "Scored"),
    # console: audit
    "audit.actor": ("操作人", "Actor"),
    "audit.role": ("角色", "Role"),
    "audit.action": ("操作", "Action"),
    "audit.interaction": ("接触记录", "Interaction"),
    "audit.reason": ("事由", "Reason"),
    "audit.details": ("详情", "Details"),

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
