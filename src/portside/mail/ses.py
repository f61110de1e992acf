"""Amazon SES SendEmail (spec §C.5) with the keys of a `credential` row, checked before any call.

The credential's content is a JSON object with `access_key`, `secret_key`, `region` (strings, required) and
`token` (optional string). Daptin crashed on a missing or non-string key; here it is a clear error. Text and
HTML together make a multipart/alternative message (Daptin sent only one of them).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from portside.tools import jsonutil

TIMEOUT = 20


class SesError(ValueError):
    """Bad input or credential, or SES refused the message."""


@dataclass(frozen=True)
class Keys:
    access_key: str
    secret_key: str
    region: str
    token: str = ""


def keys(content: Any) -> Keys:
    """The SES keys of a credential's decrypted content (SesError naming the missing key otherwise)."""
    data = content
    if isinstance(content, str):
        try:
            data = jsonutil.loads(content)
        except jsonutil.JSONError:
            raise SesError("credential content is not a JSON object") from None
    if not isinstance(data, dict):
        raise SesError("credential content is not a JSON object")
    values: dict[str, str] = {}
    for name in ("access_key", "secret_key", "region"):
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            raise SesError(f"credential has no {name}")
        values[name] = value.strip()
    token = data.get("token", "")
    if token is None:
        token = ""
    if not isinstance(token, str):
        raise SesError("credential token must be a string")
    return Keys(values["access_key"], values["secret_key"], values["region"], token)


def _send(k: Keys, endpoint: str, request: dict[str, Any]) -> dict[str, Any]:
    client = boto3.client(
        "ses",
        region_name=k.region,
        aws_access_key_id=k.access_key,
        aws_secret_access_key=k.secret_key,
        aws_session_token=k.token or None,
        endpoint_url=endpoint or None,
        config=botocore.config.Config(connect_timeout=TIMEOUT, read_timeout=TIMEOUT, retries={"max_attempts": 2}),
    )
    try:
        out: dict[str, Any] = client.send_email(**request)
    except botocore.exceptions.ClientError as exc:
        err = exc.response.get("Error", {})
        raise SesError(f"SES refused the message: {err.get('Code', '')} {err.get('Message', '')}".strip()) from None
    except (botocore.exceptions.BotoCoreError, ValueError) as exc:
        raise SesError(f"SES call failed: {type(exc).__name__}") from None
    out.pop("ResponseMetadata", None)
    return out


async def send_email(
    k: Keys,
    *,
    endpoint: str,
    source: str,
    to: list[str],
    cc: list[str],
    bcc: list[str],
    subject: str,
    text: str | None,
    html: str | None,
) -> dict[str, Any]:
    if text is None and html is None:
        raise SesError("No valid mail body found")
    body: dict[str, Any] = {}
    if text is not None:
        body["Text"] = {"Data": text, "Charset": "UTF-8"}
    if html is not None:
        body["Html"] = {"Data": html, "Charset": "UTF-8"}
    request = {
        "Source": source,
        "Destination": {"ToAddresses": to, "CcAddresses": cc, "BccAddresses": bcc},
        "Message": {"Subject": {"Data": subject, "Charset": "UTF-8"}, "Body": body},
    }
    return await asyncio.to_thread(_send, k, endpoint, request)
