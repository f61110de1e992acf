"""LIST with RFC 5258 (LIST-EXTENDED) selection and return options, RFC 6154 special-use attributes,
RFC 3348 children attributes and RFC 5819 LIST-STATUS."""

from __future__ import annotations

from typing import TYPE_CHECKING

from portside.imap import names, wire
from portside.imap.store import Account, MailboxInfo

if TYPE_CHECKING:
    from portside.imap.base import SessionBase

SELECTION = {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"}
RETURNS = {"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"}


async def run_list(session: SessionBase, account: Account, tokens: list[wire.Token]) -> None:
    from portside.imap.cmd_mailbox import STATUS_ITEMS, status_values

    selection: set[str] = set()
    extended = False
    if tokens and isinstance(tokens[0], list):
        extended = True
        selection = {wire.atom(t, "selection option").upper() for t in wire.parenthesized(tokens.pop(0))}
        if selection - SELECTION or ("RECURSIVEMATCH" in selection and not selection & {"SUBSCRIBED", "SPECIAL-USE"}):
            raise wire.ParseError("invalid selection options")
    if len(tokens) < 2:
        raise wire.ParseError("LIST expects a reference and a pattern")
    ref = session.box_name(tokens[0], "reference")
    pats_tok = tokens[1]
    patterns = (
        [session.box_name(p, "pattern") for p in pats_tok]
        if isinstance(pats_tok, list)
        else [session.box_name(pats_tok, "pattern")]
    )
    returns: set[str] = set()
    status_items: list[str] = []
    rest = tokens[2:]
    if rest:
        if len(rest) != 2 or wire.atom(rest[0]).upper() != "RETURN":
            raise wire.ParseError("invalid LIST arguments")
        extended = True
        opts = wire.parenthesized(rest[1], "return options")
        i = 0
        while i < len(opts):
            opt = wire.atom(opts[i], "return option").upper()
            if opt not in RETURNS:
                raise wire.ParseError("invalid return option")
            if opt == "STATUS":
                i += 1
                status_items = [wire.atom(s).upper() for s in wire.parenthesized(opts[i] if i < len(opts) else None)]
                if any(s not in STATUS_ITEMS for s in status_items):
                    raise wire.ParseError("unknown status item")
            returns.add(opt)
            i += 1
    if patterns == [""]:
        await session.untagged('LIST (\\Noselect) "/" ""')
        return
    boxes = await account.mailboxes()
    by_name: dict[str, MailboxInfo] = {b.name: b for b in boxes if b.exists}
    every = set(by_name)
    virtual = {p for b in every for p in names.parents(b)} - every
    children = {p for b in every for p in names.parents(b)}
    subscribed = {b.name for b in boxes if b.subscribed}
    sub_parents = {p for s in subscribed for p in names.parents(s)}
    regexes = [names.pattern(ref, p) for p in patterns]
    pool = every | virtual | (subscribed if "SUBSCRIBED" in selection else set())
    candidates = sorted(pool, key=lambda n: (n != names.INBOX, n))
    for name in candidates:
        if not any(rx.match(name) for rx in regexes):
            continue
        box = by_name.get(name)
        attrs: list[str] = []
        extra = b""
        if "SUBSCRIBED" in selection and name not in subscribed:
            unmatched = [s for s in subscribed if s.startswith(name + "/") and not any(rx.match(s) for rx in regexes)]
            if "RECURSIVEMATCH" in selection and name in sub_parents and unmatched:
                extra = b' ("CHILDINFO" ("SUBSCRIBED"))'
            else:
                continue
        if "SPECIAL-USE" in selection and (box is None or not box.special_use):
            continue
        if box is None:
            attrs.append("\\NonExistent" if extended and name not in children else "\\Noselect")
        attrs.append("\\HasChildren" if name in children else "\\HasNoChildren")
        if name in subscribed and ("SUBSCRIBED" in selection or "SUBSCRIBED" in returns):
            attrs.append("\\Subscribed")
        if box is not None and box.special_use and (not extended or returns & {"SPECIAL-USE"} or not returns):
            attrs.append(box.special_use)
        session.queue(f'* LIST ({" ".join(attrs)}) "/" '.encode() + session.wire_box(name) + extra)
        if status_items and box is not None:
            try:
                info = await account.status(name)
            except Exception:
                continue
            session.queue(b"* STATUS " + session.wire_box(name) + f" ({status_values(info, status_items)})".encode())
    await session.flush()
