"""SPF, DKIM, ARC and DMARC checks of a received message, an explainable spam score, and the
`Authentication-Results` header (RFC 8601) that records them.

`check(...)` is synchronous (dkimpy and pyspf are): the inbound service runs it in a worker thread. Every
lookup goes through `mail.dns.Lookup` (config `mail.dns_resolver`).

Scores (a message scoring JUNK_AT or more is junk: Junk mailbox, `$Junk` keyword):

| check | result | score |
|---|---|---|
| SPF | fail / softfail / permerror | 3 / 1 / 0.5 |
| DKIM | signatures present, none valid | 3 |
| DMARC | fail, policy quarantine or reject / fail, policy none | 5 / 1 |
| ARC | chain present and failing | 1 |

Nothing scores for pass, none, neutral or a temporary DNS error.
"""

from __future__ import annotations

import email.utils
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dkim
import dns.exception
import spf
from publicsuffix2 import get_sld

from portside import log
from portside.mail.dns import Lookup

logger = log.get("mail.checks")

JUNK_AT = 5.0
SPF_SCORE = {"fail": 3.0, "softfail": 1.0, "permerror": 0.5}
_TAG = re.compile(r"\s*([a-z]+)\s*=\s*([^;]*)", re.IGNORECASE)
_SIG_D = re.compile(rb"(?:^|;)\s*d\s*=\s*([^;\s]+)", re.IGNORECASE)
_SIG_S = re.compile(rb"(?:^|;)\s*s\s*=\s*([^;\s]+)", re.IGNORECASE)
MAX_SIGNATURES = 5
_EMPTY_LINE = re.compile(rb"\r?\n\r?\n")


@dataclass
class Results:
    spf: str = "none"
    spf_domain: str = ""
    dkim: list[dict[str, Any]] = field(default_factory=list)  # {"result", "domain", "selector"}
    dmarc: str = "none"
    dmarc_policy: str = ""
    from_domain: str = ""
    arc: str = "none"
    score: float = 0.0
    reasons: list[dict[str, Any]] = field(default_factory=list)

    @property
    def junk(self) -> bool:
        return self.score >= JUNK_AT

    def detail(self) -> dict[str, Any]:
        """The verdict as stored on the row (`mail.spam_verdict`)."""
        return {
            "score": self.score,
            "threshold": JUNK_AT,
            "junk": self.junk,
            "spf": {"result": self.spf, "domain": self.spf_domain},
            "dkim": self.dkim,
            "dmarc": {"result": self.dmarc, "policy": self.dmarc_policy, "from_domain": self.from_domain},
            "arc": self.arc,
            "reasons": self.reasons,
        }

    def add(self, check: str, result: str, score: float) -> None:
        if score:
            self.score += score
            self.reasons.append({"check": check, "result": result, "score": score})


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip().strip(".").lower() if "@" in address else ""


@functools.lru_cache(maxsize=4096)
def org_domain(domain: str) -> str:
    """The organizational domain (public suffix + one label), for DMARC alignment."""
    try:
        return (get_sld(domain) or domain).lower()
    except Exception:
        return domain


def header_from_domain(raw: bytes) -> str:
    """The domain of the (single) From header, '' when there is none or several."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    unfolded = re.sub(rb"\r?\n[ \t]+", b" ", head)
    values = [line.split(b":", 1)[1] for line in unfolded.splitlines() if line.lower().startswith(b"from:")]
    if len(values) != 1:
        return ""
    pairs = email.utils.getaddresses([values[0].decode("utf-8", "replace")])
    addrs = [a for _, a in pairs if a]
    return _domain(addrs[0]) if len(addrs) == 1 else ""


def _spf(res: Results, lookup: Lookup, ip: str, mail_from: str, helo: str) -> None:
    sender = mail_from if mail_from and mail_from != "<>" else f"postmaster@{helo}"
    res.spf_domain = _domain(sender)
    if not ip or not res.spf_domain:
        return
    token = lookup.bind()
    try:
        result, _explanation = spf.check2(i=ip, s=sender, h=helo or res.spf_domain, timeout=10, querytime=10)
    except Exception:
        result = "temperror"
    finally:
        token.var.reset(token)
    res.spf = str(result).lower()
    res.add("spf", res.spf, SPF_SCORE.get(res.spf, 0.0))


def _head_fields(raw: bytes) -> list[Any]:
    """dkimpy's header fields of `raw`, parsed from the header block only (the same fields and the same
    errors as parsing the whole message: dkimpy's parser stops at the first empty line)."""
    end = _EMPTY_LINE.search(raw)
    return list(dkim.rfc822_parse(raw[: end.end()] if end else raw)[0])


def _dkim(res: Results, lookup: Lookup, raw: bytes) -> None:
    try:
        if not any(name.lower() == b"dkim-signature" for name, _ in _head_fields(raw)):
            return  # unsigned: nothing to verify, no need to split and canonicalise the body
        d = dkim.DKIM(raw, minkey=1024, timeout=5)
        headers = [(k, v) for k, v in d.headers if k.lower() == b"dkim-signature"][:MAX_SIGNATURES]
    except Exception:
        res.dkim.append({"result": "permerror", "domain": "", "selector": ""})
        res.add("dkim", "permerror", 3.0)
        return
    for idx, (_, value) in enumerate(headers):
        dm, sm = _SIG_D.search(value), _SIG_S.search(value)
        domain = dm.group(1).decode("ascii", "replace").lower() if dm else ""
        selector = sm.group(1).decode("ascii", "replace") if sm else ""
        try:
            ok = d.verify(idx=idx, dnsfunc=lookup.dkim_txt)
            result = "pass" if ok else "fail"
        except dns.exception.DNSException:
            result = "temperror"
        except Exception:
            result = "fail"
        res.dkim.append({"result": result, "domain": domain, "selector": selector})
    if res.dkim and not any(s["result"] in ("pass", "temperror") for s in res.dkim):
        res.add("dkim", "fail", 3.0)


def _arc(res: Results, lookup: Lookup, raw: bytes) -> None:
    if b"arc-seal:" not in raw.split(b"\r\n\r\n", 1)[0].lower():
        return
    try:
        cv, _results, _comment = dkim.arc_verify(raw, dnsfunc=lookup.dkim_txt)
        res.arc = (cv.decode() if isinstance(cv, bytes) else str(cv)).lower()
    except Exception:
        res.arc = "fail"
    if res.arc == "fail":
        res.add("arc", "fail", 1.0)


def _dmarc_record(lookup: Lookup, domain: str) -> dict[str, str] | None:
    for name in dict.fromkeys([domain, org_domain(domain)]):
        for txt in lookup.txt(f"_dmarc.{name}"):
            text = txt.decode("utf-8", "replace")
            if text.lower().startswith("v=dmarc1"):
                tags = {k.lower(): v.strip() for k, v in _TAG.findall(text)}
                tags["_sub"] = "1" if name != domain else ""
                return tags
    return None


def _aligned(a: str, b: str, mode: str) -> bool:
    if not a or not b:
        return False
    return a == b if mode == "s" else org_domain(a) == org_domain(b)


def _dmarc(res: Results, lookup: Lookup, raw: bytes) -> None:
    res.from_domain = header_from_domain(raw)
    if not res.from_domain:
        return
    try:
        record = _dmarc_record(lookup, res.from_domain)
    except Exception:
        res.dmarc = "temperror"
        return
    if record is None:
        return
    policy = (record.get("sp") if record.get("_sub") and record.get("sp") else record.get("p", "none")) or "none"
    res.dmarc_policy = policy.lower()
    spf_ok = res.spf == "pass" and _aligned(res.spf_domain, res.from_domain, record.get("aspf", "r").lower())
    dkim_ok = any(
        s["result"] == "pass" and _aligned(s["domain"], res.from_domain, record.get("adkim", "r").lower())
        for s in res.dkim
    )
    res.dmarc = "pass" if spf_ok or dkim_ok else "fail"
    if res.dmarc == "fail":
        res.add("dmarc", f"fail (p={res.dmarc_policy})", 5.0 if res.dmarc_policy in ("quarantine", "reject") else 1.0)


def check(raw: bytes, *, ip: str, mail_from: str, helo: str, resolver: str) -> Results:
    """Every check of one received message (synchronous; DNS through `resolver`)."""
    lookup = Lookup.of(resolver)
    res = Results()
    steps: list[Callable[[], None]] = [
        lambda: _spf(res, lookup, ip, mail_from, helo),
        lambda: _dkim(res, lookup, raw),
        lambda: _arc(res, lookup, raw),
        lambda: _dmarc(res, lookup, raw),
    ]
    for step in steps:
        try:
            step()
        except Exception:  # a check that breaks scores nothing; the message is still delivered
            logger.exception("a mail check failed")
            res.reasons.append({"check": "internal", "result": "temperror", "score": 0})
    return res


def _clean(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9@._+\-=]", "", value)[:200]


def authentication_results(authserv_id: str, res: Results, mail_from: str) -> bytes:
    """The `Authentication-Results` header field (folded, CRLF-terminated) for these results."""
    parts = [f"spf={res.spf} smtp.mailfrom={_clean(mail_from if mail_from != '<>' else res.spf_domain)}"]
    if res.dkim:
        for s in res.dkim:
            parts.append(f"dkim={s['result']} header.d={_clean(s['domain'])} header.s={_clean(s['selector'])}")
    else:
        parts.append("dkim=none")
    dmarc = f"dmarc={res.dmarc}"
    if res.dmarc_policy:
        dmarc += f" (p={_clean(res.dmarc_policy)})"
    if res.from_domain:
        dmarc += f" header.from={_clean(res.from_domain)}"
    parts.append(dmarc)
    parts.append(f"arc={res.arc}")
    return ("Authentication-Results: " + _clean(authserv_id) + ";\r\n\t" + ";\r\n\t".join(parts) + "\r\n").encode()


def authenticated_results(authserv_id: str, login: str) -> bytes:
    """The header for mail submitted by a signed-in account (no sender checks apply)."""
    return f"Authentication-Results: {_clean(authserv_id)};\r\n\tauth=pass smtp.auth={_clean(login)}\r\n".encode()


def strip_forged_results(raw: bytes, authserv_id: str) -> bytes:
    """Drop incoming `Authentication-Results` fields that claim to come from us (RFC 8601 §5)."""
    sep = raw.find(b"\r\n\r\n")
    if sep < 0:
        return raw
    head, rest = raw[: sep + 2], raw[sep + 2 :]
    if b"authentication-results" not in head.lower():
        return raw
    fields = re.split(rb"\r\n(?![ \t])", head.rstrip(b"\r\n"))
    ours = authserv_id.lower().encode()
    kept: list[bytes] = []
    for f in fields:
        name, _, value = f.partition(b":")
        if name.strip().lower() == b"authentication-results" and value.strip().lower().split(b";")[0].strip() == ours:
            continue
        kept.append(f)
    if len(kept) == len(fields):
        return raw
    return b"\r\n".join(kept) + b"\r\n" + rest
