"""The bank's words for the codes the gateway stores, in zh-CN (the default) and English.

Used by the alert texts and the agent desktop; the vocabulary follows the team glossary
(``/work/shared/GLOSSARY.md``). An unknown code is shown as itself.
"""

from __future__ import annotations

LANGUAGES: tuple[str, ...] = ("zh-CN", "en")
DEFAULT_LANGUAGE = "zh-CN"

_ZH: dict[str, str] = {
    # channels
    "voice": "电话", "online_banking": "网银", "mobile_banking": "手机银行", "email": "邮件", "branch": "网点",
    "sms": "短信", "wechat": "微信", "corporate_banking": "企业网银", "phone_banking": "电话银行", "atm": "ATM",
    "counter": "柜面", "quick_pay": "快捷支付",
    # customer
    "personal": "个人客户", "corporate": "对公客户", "private_banking": "私人银行客户", "wealth": "财富客户",
    "affluent": "富裕客户", "mass": "大众客户", "sme": "小微企业", "diamond": "钻石卡", "platinum": "白金卡",
    "gold": "金卡", "silver": "银卡", "standard": "普卡",
    # products
    "current_account": "活期账户", "savings_account": "储蓄账户", "time_deposit": "定期存款", "debit_card": "借记卡",
    "credit_card": "信用卡", "personal_loan": "个人贷款", "mortgage": "住房贷款", "corporate_loan": "对公贷款",
    "wealth_product": "理财", "fund": "基金", "insurance": "保险", "precious_metal": "贵金属",
    "active": "正常", "dormant": "睡眠", "frozen": "冻结", "closed": "已销户",
    "block": "止付", "freeze": "冻结",
    # cases, credit, appointments
    "complaint": "投诉", "service_request": "服务请求", "feedback": "客户之声", "open": "待处理",
    "in_progress": "处理中", "resolved": "已解决", "overdue": "已超时", "due_soon": "即将超时", "on_track": "时限内",
    "no_sla": "无时限", "accepted": "受理", "investigation": "调查评价", "approval": "审批", "disbursement": "发放",
    "reception_day": "客户接待日", "branch_visit": "网点预约", "advisor_call": "顾问回访", "booked": "已预约",
    # contacts
    "call": "来电", "session": "会话", "thread": "邮件往来", "case": "工单", "visit": "到访",
    "ringing": "振铃", "offered": "排队", "answered": "接通", "ended": "已挂机", "abandoned": "放弃", "replied": "已回复",
    "recorded": "已记录", "visited": "已到访", "inbound": "来电", "outbound": "去电",
    "identified": "已识别", "ambiguous": "多个候选", "unidentified": "未识别",
    # event types
    "call.offered": "排队", "call.ringing": "振铃", "call.answered": "接通", "call.ended": "挂机",
    "call.abandoned": "放弃", "call.missed": "未接", "call.transferred": "转接", "call.held": "保持",
    "call.resumed": "恢复", "ivr.selection": "语音导航按键", "callback.requested": "预约回电",
    "contact.wrapup": "小结", "contact.note": "备注", "session.started": "会话开始", "session.ended": "会话结束",
    "login.succeeded": "登录成功", "login.failed": "登录失败", "password.reset": "重置密码",
    "device.bound": "绑定设备", "transfer.initiated": "发起转账", "transfer.succeeded": "转账成功",
    "transfer.failed": "转账失败", "payment.failed": "交易失败", "card.frozen": "冻结卡片", "card.unfrozen": "解冻卡片",
    "profile.changed": "资料变更", "screen.viewed": "浏览页面", "app.action": "应用操作", "identity.linked": "身份关联",
    "message.received": "收到邮件", "message.sent": "发出邮件", "complaint.opened": "投诉受理",
    "complaint.updated": "投诉更新", "complaint.closed": "投诉办结", "survey.answered": "满意度调查",
    "feedback.received": "客户之声", "visit.checked_in": "网点签到", "appointment.booked": "预约接待日",
    # failure reasons (seeded and sample traffic)
    "insufficient_funds": "余额不足", "daily_limit_exceeded": "超过日累计限额", "payee_account_invalid": "收款账户有误",
    "risk_control_hold": "风控拦截", "otp_timeout": "验证码超时", "wrong_password": "密码错误",
    "account_locked": "账户锁定", "account_closure": "销户咨询",
    # dispositions (wrap-up)
    "resolved_first_contact": "一次解决", "follow_up": "需跟进", "transferred": "已转接", "complaint_logged": "已登记投诉",
    "callback_scheduled": "已约回电", "information_only": "咨询",
    # severities and categories
    "critical": "紧急", "warning": "注意", "info": "提示", "priority": "优先服务", "repeat": "重复来电", "churn": "流失预警",
    "reason": "来电原因",
}

_EN: dict[str, str] = {
    "voice": "phone", "online_banking": "online banking", "mobile_banking": "mobile banking", "email": "email",
    "branch": "branch", "sms": "SMS", "wechat": "WeChat", "corporate_banking": "corporate banking",
    "phone_banking": "phone banking", "atm": "ATM", "counter": "counter", "quick_pay": "quick pay",
    "personal": "personal", "corporate": "corporate", "private_banking": "private banking", "wealth": "wealth",
    "affluent": "affluent", "mass": "mass", "sme": "SME", "diamond": "diamond", "platinum": "platinum", "gold": "gold",
    "silver": "silver", "standard": "standard",
    "current_account": "current account", "savings_account": "savings account", "time_deposit": "time deposit",
    "debit_card": "debit card", "credit_card": "credit card", "personal_loan": "personal loan", "mortgage": "mortgage",
    "corporate_loan": "corporate loan", "wealth_product": "wealth product", "fund": "fund", "insurance": "insurance",
    "precious_metal": "precious metal", "active": "active", "dormant": "dormant", "frozen": "frozen",
    "closed": "closed", "block": "stop-payment", "freeze": "frozen",
    "complaint": "complaint", "service_request": "service request", "feedback": "feedback", "open": "open",
    "in_progress": "in progress", "resolved": "resolved", "overdue": "overdue", "due_soon": "due soon",
    "on_track": "on track", "no_sla": "no SLA", "accepted": "accepted", "investigation": "investigation & rating",
    "approval": "approval", "disbursement": "disbursement", "reception_day": "reception day",
    "branch_visit": "branch visit", "advisor_call": "advisor call", "booked": "booked",
    "call": "call", "session": "session", "thread": "email thread", "case": "case", "visit": "visit",
    "ringing": "ringing", "offered": "queued", "answered": "answered", "ended": "ended", "abandoned": "abandoned",
    "replied": "replied", "recorded": "recorded", "visited": "visited", "inbound": "inbound", "outbound": "outbound",
    "identified": "identified", "ambiguous": "ambiguous", "unidentified": "unidentified",
    "insufficient_funds": "insufficient funds", "daily_limit_exceeded": "daily limit exceeded",
    "payee_account_invalid": "payee account invalid", "risk_control_hold": "risk-control hold",
    "otp_timeout": "one-time code timed out", "wrong_password": "wrong password", "account_locked": "account locked",
    "account_closure": "account-closure enquiry",
    "resolved_first_contact": "resolved at first contact", "follow_up": "follow-up needed",
    "transferred": "transferred", "complaint_logged": "complaint logged", "callback_scheduled": "callback scheduled",
    "information_only": "information only",
    "critical": "critical", "warning": "warning", "info": "info", "priority": "priority", "repeat": "repeat contact",
    "churn": "churn risk", "reason": "likely reason",
}

# Wrap-up dispositions offered on the desktop, in display order.
DISPOSITIONS: tuple[str, ...] = ("resolved_first_contact", "information_only", "follow_up", "complaint_logged",
                                 "callback_scheduled", "transferred")


def label(code: str | None, lang: str = DEFAULT_LANGUAGE) -> str:
    """The word for a code in ``lang``; event types fall back to their dotted name, unknown codes to themselves."""
    if code is None:
        return ""
    table = _ZH if lang == "zh-CN" else _EN
    if code in table:
        return table[code]
    if code.lower() in table:
        return table[code.lower()]
    if lang != "zh-CN" and "." in code:
        return code.replace(".", " ").replace("_", " ")
    return code


def language(value: str | None) -> str:
    """A supported language for a requested one (``en``, ``en-US`` → ``en``; anything else → zh-CN)."""
    if value and value.lower().startswith("en"):
        return "en"
    return DEFAULT_LANGUAGE
