"""Delivery status notifications (RFC 3464): the bounce a sender finds in their INBOX when a message could
not be delivered (a 5xx reply, or the last retry failed).

`multipart/report; report-type=delivery-status` with three parts: a human-readable explanation, the
`message/delivery-status` fields (per-message: Reporting-MTA, Arrival-Date; per-recipient: Final-Recipient,
Action: failed, Status, Diagnostic-Code, Last-Attempt-Date) and the original message's header
(`text/rfc822-headers`).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
import uuid

_CODE_RE = re.compile(r"^([245])(\d\d)[ -]?(?:([245]\.\d{1,3}\.\d{1,3}))?")
MAX_HEADER_BYTES = 64 * 1024


def status_of(error: str, permanent: bool) -> str:
    """The RFC 3463 status code of a failure text (`550 5.1.1 ...` -> `5.1.1`)."""
    m = _CODE_RE.match(error.strip())
    if m and m.group(3):
        return m.group(3)
    if m:
        return f"{m.group(1)}.0.0"
    return "5.0.0" if permanent else "4.4.7"  # 4.4.7: delivery time expired


def _header_block(raw: bytes) -> bytes:
    head = raw.split(b"\r\n\r\n", 1)[0]
    return head[:MAX_HEADER_BYTES] + b"\r\n"


def _oneline(text: str) -> str:
    return " ".join(text.split())[:900]


def bounce(
    *,
    reporting_mta: str,
    sender: str,
    recipient: str,
    error: str,
    permanent: bool,
    original: bytes,
    arrival: dt.datetime | None = None,
) -> bytes:
    """The raw bytes of a DSN for one failed recipient, addressed to `sender`."""
    now = dt.datetime.now(dt.UTC)
    status = status_of(error, permanent)
    mta = reporting_mta or "localhost"
    boundary = f"dsn-{uuid.uuid4().hex}"
    why = "was refused by the receiving server" if permanent else "could not be delivered after every retry"
    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{mta}>",
        f"To: <{sender}>",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {email.utils.format_datetime(now)}",
        f"Message-ID: <{uuid.uuid4()}@{mta}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type="delivery-status";\r\n boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
    ]
    arrived = arrival.replace(tzinfo=dt.UTC) if arrival else now
    fields = [
        f"Reporting-MTA: dns; {mta}",
        f"Arrival-Date: {email.utils.format_datetime(arrived)}",
        "",
        f"Final-Recipient: rfc822; {recipient}",
        "Action: failed",
        f"Status: {status}",
        f"Diagnostic-Code: smtp; {_oneline(error)}",
        f"Last-Attempt-Date: {email.utils.format_datetime(now)}",
    ]
    text = [
        f"This is the mail system at host {mta}.",
        "",
        f"Your message to <{recipient}> {why}:",
        "",
        f"    {_oneline(error)}",
    ]
    crlf = "\r\n"
    parts = [
        f"--{boundary}",
        'Content-Type: text/plain; charset="us-ascii"',
        "Content-Description: Notification",
        "",
        crlf.join(text),
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "Content-Description: Delivery report",
        "",
        crlf.join(fields),
        "",
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        "Content-Description: Undelivered message headers",
        "",
    ]
    body = crlf.join(head + parts).encode("ascii", "replace") + b"\r\n" + _header_block(original)
    body += f"\r\n--{boundary}--\r\n".encode("ascii")
    return body
