"""`mail_server/sync_mail_servers` (performer `mail.servers.sync`): kept from Daptin as a harmless re-check.

SMTP listeners already follow the `mail_server` rows live on every node (no restart, no sync needed); the
action reports what the rows ask for and what is wrong with them (an unparsable `listen_interface`, two
enabled rows on one interface). Administrators only.
"""

from __future__ import annotations

from typing import Any

from portside.actions.registry import ActionContext, Response, notify, performers
from portside.auth import access
from portside.core.schema import SchemaDoc, parse_document
from portside.errors import BadRequest, Forbidden
from portside.mail import servers

MAIL_SERVER_ACTIONS: dict[str, Any] = {
    "Actions": [
        {
            "Name": "sync_mail_servers",
            "Label": "Check the mail server listeners",
            "OnType": "mail_server",
            "InstanceOptional": True,
            "OutFields": [{"Type": "mail.servers.sync", "Method": "EXECUTE", "Attributes": {}}],
        }
    ]
}


def mail_servers_doc() -> SchemaDoc:
    return parse_document(MAIL_SERVER_ACTIONS, "<mail_server actions>")


@performers.register("mail.servers.sync")
async def sync(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    if not access.may_administer(ctx.actor, open_mode=ctx.services.catalog.open_mode):
        raise Forbidden("only administrators may check the mail servers")
    planned = await servers.plan(ctx.uow.conn, ctx.services.model)
    problems = sorted({w for w in planned.values() if isinstance(w, str)})
    if problems:
        raise BadRequest("; ".join(problems))
    running = sorted(planned)
    if servers.disabled():
        return [notify("success", "Success", f"SMTP is disabled ({servers.DISABLE_ENV}=true)")]
    listing = ", ".join(running) if running else "none"
    return [notify("success", "Success", f"mail servers follow their rows live; listeners: {listing}")]
