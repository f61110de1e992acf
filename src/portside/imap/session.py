"""One IMAP connection: the command families composed into a session."""

from __future__ import annotations

from portside.imap.cmd_any import AnyState
from portside.imap.cmd_fetch import FetchCommand
from portside.imap.cmd_login import LoginCommands
from portside.imap.cmd_mailbox import MailboxCommands
from portside.imap.cmd_selected import SelectedCommands


class ImapSession(AnyState, LoginCommands, MailboxCommands, SelectedCommands, FetchCommand):
    """State machine and dispatch live in `base.SessionBase`; each mixin adds one family of commands."""
