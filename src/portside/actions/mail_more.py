"""More mail actions: `aws.mail.send` (SES), `mail_box/status` (spec §C.6, only what the caller may see) and
the password reset pair `reset-password` / `reset-password-verify` (through mail.send's queue).

Password reset, the better way: the sender is configurable (config `mail.password_reset_from`, default
`no-reply@<--hostname>`; no mail account or DKIM key is needed, both are used when they exist). The code is
stateless: eight digits of an HMAC (key `jwt.secret`) over the user, their current password hash and a
15-minute window, valid for the current and the previous window and dead as soon as the password changes.
Both actions answer the same whether or not the address has an account, and are rate-limited through the
login throttle.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from typing import Any

import sqlalchemy as sa

from portside.actions.builtin import SYSTEM
from portside.actions.mail_send import SIGNED_IN, queue_message
from portside.actions.registry import ActionContext, Response, notify, performers, response
from portside.auth import access
from portside.auth.permissions import READ
from portside.core import masks, records
from portside.core.schema import SchemaDoc, parse_document
from portside.errors import BadRequest, Forbidden, NotFound, UpstreamError
from portside.mail import boxes, compose, ses
from portside.tools import crypto, names
from portside.tools.ids import parse_uuid

OTP_WINDOW = 900
OTP_DIGITS = 8
MAX_PAGE = 500


def _field(name: str, ctype: str = "label", nullable: bool = True) -> dict[str, Any]:
    return {"ColumnName": name, "ColumnType": ctype, "IsNullable": nullable}


MORE_ACTIONS: dict[str, Any] = {
    "Actions": [
        {
            "Name": "aws.mail.send",
            "Label": "Send mail through Amazon SES",
            "OnType": "world",
            "InstanceOptional": True,
            "Permission": SIGNED_IN,  # the credential row's Read right decides
            "InFields": [
                _field("from"),
                _field("to", "json"),
                _field("cc", "json"),
                _field("bcc", "json"),
                _field("subject"),
                _field("text", "content"),
                _field("html", "content"),
                _field("credential"),
            ],
            "OutFields": [{"Type": "aws.mail.send", "Method": "EXECUTE", "Attributes": {}}],
        },
        {
            "Name": "status",
            "Label": "Mailbox status",
            "OnType": "mail_box",
            "InstanceOptional": True,
            "Permission": SIGNED_IN,  # every box is filtered by what the caller may read
            "InFields": [
                _field("mail_account_id"),
                _field("mail_box_id"),
                _field("page_size", "measurement"),
                _field("page_number", "measurement"),
            ],
            "OutFields": [{"Type": "mail_box.status", "Method": "EXECUTE", "Attributes": {}}],
        },
        {
            "Name": "reset-password",
            "Label": "Reset password",
            "OnType": "user_account",
            "InstanceOptional": True,
            "Permission": masks.DEFAULT_PERMISSION,  # guests: they cannot sign in
            "InFields": [_field("email", "email", False)],
            "OutFields": [{"Type": "password.reset.begin", "Method": "EXECUTE", "Attributes": {}}],
        },
        {
            "Name": "reset-password-verify",
            "Label": "Verify password reset",
            "OnType": "user_account",
            "InstanceOptional": True,
            "Permission": masks.DEFAULT_PERMISSION,
            "InFields": [
                _field("email", "email", False),
                _field("otp", "label", False),
                _field("password", "password"),
            ],
            "OutFields": [{"Type": "password.reset.verify", "Method": "EXECUTE", "Attributes": {}}],
        },
    ]
}


def more_actions_doc() -> SchemaDoc:
    return parse_document(MORE_ACTIONS, "<more mail actions>")


def _params(ctx: ActionContext, attrs: dict[str, Any]) -> dict[str, Any]:
    return attrs if any(v not in (None, "") for v in attrs.values()) else dict(ctx.attributes)


# -- aws.mail.send -------------------------------------------------------------------------------------


@performers.register("aws.mail.send")
async def aws_mail_send(ctx: ActionContext, attrs: dict[str, Any]) -> list[Response]:
    s, p = ctx.services, _params(ctx, attrs)
    source = compose.address(p.get("from"), "from")
    to = compose.addresses(p.get("to"), "to", 50)
    if not to:
        raise BadRequest("missing required field: to", pointer="/attributes/to")
    cc, bcc = compose.addresses(p.get("cc"), "cc", 50), compose.addresses(p.get("bcc"), "bcc", 50)
    subject = compose.text_field(p.get("subject"), "subject", compose.MAX_SUBJECT, single_line=True)
    text = compose.text_field(p.get("text"), "text", 5_000_000) if p.get("text") not in (None, "") else None
    html = compose.text_field(p.get("html"), "html", 5_000_000) if p.get("html") not in (None, "") else None
    if text is None and html is None:
        raise BadRequest("No valid mail body found")
    name = p.get("credential")
    if not isinstance(name, str) or not name.strip():
        raise BadRequest("missing required field: credential", pointer="/attributes/credential")
    tm = s.model.table("credential")
    found = await records.fetch(ctx.uow.conn, s.model, tm, tm.sa.c.name == name.strip(), limit=1)
    if not found or not access.may(ctx.actor, READ, found[0].grants):
        raise NotFound(f"no credential named {name.strip()[:100]!r}")
    stored = await ctx.uow.conn.scalar(sa.select(tm.sa.c.content).where(tm.sa.c.id == found[0].id))
    try:
        keys = ses.keys(crypto.decrypt(s.crud.secret, stored or ""))
    except ValueError as exc:  # SesError too
        msg = str(exc) if isinstance(exc, ses.SesError) else "credential content cannot be decrypted"
        raise BadRequest(msg, pointer="/attributes/credential") from None
    endpoint = (s.config.get("aws.ses_endpoint") or "").strip()

    async def call() -> list[Response]:  # after the action's transaction: nothing held while AWS answers
        try:
            out = await ses.send_email(
                keys, endpoint=endpoint, source=source, to=to, cc=cc, bcc=bcc, subject=subject, text=text, html=html
            )
        except ses.SesError as exc:
            raise UpstreamError(str(exc)) from None
        attrs = {"type": "success", "title": "Success", "message": "email sent successfully", "result": out}
        return [response("client.notify", attrs)]

    ctx.post.append(call)
    return []


# -- mail_box/status -----------------------------------------------------------------------------------


def _int(value: Any, default: int, field: str, low: int, high: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{field} must be a number", pointer=f"/attributes/{field}") from None
    if not low <= number <= high:
        raise BadRequest(f"{field} must be between {low} and {high}", pointer=f"/attributes/{field}")
    return number


async def _id_of(ctx: ActionContext, table: str, ref: Any, field: str) -> int | None:
    if ref in (None, ""):
        return None
    uuid = parse_uuid(ref) if isinstance(ref, str) else None
    if uuid is None:
        raise BadRequest(f"{field} must be a reference id", pointer=f"/attributes/{field}")
    return await records.id_of(ctx.uow.conn, ctx.services.model.table(table), uuid) or -1


@performers.register("mail_box.status")
async def mailbox_status(ctx: ActionContext, attrs: dict[str, Any]) -> list[Response]:
    s, p, conn = ctx.services, _params(ctx, attrs), ctx.uow.conn
    size = _int(p.get("page_size"), 50, "page_size", 1, MAX_PAGE)
    number = _int(p.get("page_number"), 1, "page_number", 1, 1_000_000)
    account_id = await _id_of(ctx, boxes.ACCOUNT_TABLE, p.get("mail_account_id"), "mail_account_id")
    box_id = await _id_of(ctx, boxes.BOX_TABLE, p.get("mail_box_id"), "mail_box_id")
    model = s.model
    b, a, m = (model.table(n).sa for n in (boxes.BOX_TABLE, boxes.ACCOUNT_TABLE, "mail"))
    if access.administers(ctx.actor):
        q = sa.select(b.c.id)
    elif ctx.actor.user_id is None:
        raise Forbidden("sign in to see mailboxes")
    else:  # the caller's own accounts' boxes, then each checked by the one rights decision for mailboxes
        mine = sa.select(a.c.id).where(a.c.user_account_id == ctx.actor.user_id)
        q = sa.select(b.c.id).where(b.c.mail_account_id.in_(mine))
    if account_id is not None:
        q = q.where(b.c.mail_account_id == account_id)
    if box_id is not None:
        q = q.where(b.c.id == box_id)
    ids = [int(i) for i in (await conn.scalars(q)).all()]
    visible = []
    for box_row_id in ids:
        box = await boxes.mailbox_by_id(conn, model, box_row_id)
        if box is not None and access.may_read_mailbox(ctx.actor, box.grants):
            visible.append(box)
    visible.sort(key=lambda x: (x.name, x.id))
    total = len(visible)
    page = visible[(number - 1) * size : number * size]
    acc_refs = dict((await conn.execute(sa.select(a.c.id, a.c.reference_id))).all()) if page else {}
    data = []
    live = m.c.deleted == sa.false()
    for box in page:
        counts = (
            await conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.sum(sa.case((m.c.recent == sa.true(), 1), else_=0)),
                    sa.func.sum(sa.case((m.c.seen == sa.false(), 1), else_=0)),
                ).where(m.c.mail_box_id == box.id, live)
            )
        ).one()
        item: dict[str, Any] = {
            "mail_box_id": box.ref,
            "mail_account_id": acc_refs.get(box.account_id),
            "name": box.name,
            "messages": int(counts[0] or 0),
            "recent": int(counts[1] or 0),
            "unseen": int(counts[2] or 0),
            "uidnext": box.nextuid,
            "uidvalidity": box.uidvalidity,
        }
        latest = (
            await conn.execute(
                sa.select(
                    m.c.reference_id,
                    m.c.subject,
                    m.c.from_address,
                    m.c.internal_date,
                    m.c.message_id,
                    m.c.seen,
                    m.c.recent,
                    m.c.uid,
                )
                .where(m.c.mail_box_id == box.id, live)
                .order_by(m.c.uid.desc())
                .limit(1)
            )
        ).first()
        if latest is not None:
            item["latest_message"] = {
                "reference_id": latest.reference_id,
                "subject": latest.subject,
                "from_address": latest.from_address,
                "internal_date": latest.internal_date.isoformat() if latest.internal_date else None,
                "message_id": latest.message_id,
                "seen": bool(latest.seen),
                "recent": bool(latest.recent),
                "uid": int(latest.uid or 0),
            }
        data.append(item)
    first = (number - 1) * size + 1 if page else 0
    pagination = {
        "total": total,
        "per_page": size,
        "current_page": number,
        "last_page": max(1, math.ceil(total / size)),
        "from": first,
        "to": first + len(page) - 1 if page else 0,
    }
    return [response("mail_box.status", {"data": data, "pagination": pagination})]


# -- password reset ------------------------------------------------------------------------------------


def otp_for(secret: str, user_id: int, password_hash: str, window: int) -> str:
    mac = hmac.new(secret.encode(), f"reset|{user_id}|{password_hash}|{window}".encode(), hashlib.sha256).digest()
    return str(int.from_bytes(mac[:8], "big") % 10**OTP_DIGITS).zfill(OTP_DIGITS)


async def _user(ctx: ActionContext, email: str) -> Any:
    u = ctx.services.model.table("user_account").sa
    q = sa.select(u.c.id, u.c.reference_id, u.c.password, u.c.email).where(u.c.email == email)
    return (await ctx.uow.conn.execute(q)).first()


def _email(ctx: ActionContext) -> str:
    raw = ctx.attributes.get("email")
    try:
        return names.email(str(raw or ""))
    except (ValueError, TypeError, names.BadName):
        raise BadRequest("invalid email", pointer="/attributes/email") from None


async def _mail(ctx: ActionContext, to: str, subject: str, text: str) -> None:
    s = ctx.services
    sender = compose.address(
        s.config.get("mail.password_reset_from") or f"no-reply@{s.settings.hostname}", "mail.password_reset_from"
    )
    account = await boxes.account_by_address(ctx.uow.conn, s.model, sender)
    server_id = None
    host = (s.config.get("mail.default_server_hostname") or "").strip().lower()
    if host:
        t = s.model.table(boxes.SERVER_TABLE).sa
        found = await ctx.uow.conn.scalar(sa.select(t.c.id).where(t.c.hostname == host))
        server_id = int(found) if found is not None else None
    raw = compose.compose(sender=sender, to=[to], subject=subject, text=text)
    owner = (account.owner_id, account.owner_ref) if account is not None else (None, None)
    await queue_message(
        s, ctx.uow, sender=sender, account=account, recipients=[to], raw=raw, server_id=server_id, owner=owner
    )


SENT_TEXT = "If this address belongs to an account, a reset code is on its way"


@performers.register("password.reset.begin")
async def reset_begin(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    email = _email(ctx)
    ctx.services.logins.begin(f"reset:{email}", ctx.client)  # counts against the address and the account
    user = await _user(ctx, email)
    if user is not None:
        window = int(time.time()) // OTP_WINDOW
        code = otp_for(ctx.services.jwt_secret, int(user.id), user.password or "", window)
        text = (
            f"Your password reset code is {code}\r\n\r\n"
            "It is valid for 15 minutes. If you did not ask for it, ignore this message.\r\n"
        )
        await _mail(ctx, email, "Password reset code", text)
    return [notify("success", "Success", SENT_TEXT)]


@performers.register("password.reset.verify")
async def reset_verify(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    s = ctx.services
    email = _email(ctx)
    attempt = s.logins.begin(f"reset:{email}", ctx.client)
    otp = str(ctx.attributes.get("otp") or "").strip()
    user = await _user(ctx, email)
    now = int(time.time()) // OTP_WINDOW
    good = user is not None and any(
        hmac.compare_digest(otp, otp_for(s.jwt_secret, int(user.id), user.password or "", w)) for w in (now, now - 1)
    )
    if not good or user is None:
        raise BadRequest("invalid or expired code", pointer="/attributes/otp")
    attempt.succeeded()
    chosen = ctx.attributes.get("password")
    if chosen not in (None, ""):
        if not isinstance(chosen, str) or len(chosen) < 8 or not chosen.strip():
            raise BadRequest("password must have at least 8 characters", pointer="/attributes/password")
        new, text = chosen, "Your password was changed.\r\n"
    else:  # Daptin: a random password, sent by mail
        new = secrets.token_urlsafe(12)
        text = f"Your password was reset. Your new password is: {new}\r\n\r\nChange it after you sign in.\r\n"
    await s.crud.update(SYSTEM, "user_account", user.reference_id, {"password": new}, uow=ctx.uow)
    await _mail(ctx, email, "Your password was reset", text)
    return [notify("success", "Success", "Password changed")]
