"""The FTP session: pyftpdlib's TLS handler with Portside's login, session registry, FS and replies.

One handler class is made per listener (`handler_class`), carrying that listener's settings: the backend
bridge, the TLS provider, implicit TLS, required TLS, passive ports, announced address, idle timeout.
pyftpdlib itself gives explicit TLS (`AUTH TLS`, `PBSZ`, `PROT P`), REST, APPE, MLSD/MLST, SIZE/MDTM, UTF8,
EPSV/EPRT and active/passive data connections; an implicit-TLS listener secures the socket before the
greeting. A session that the registry ends (password changed, application password revoked) gets `421`
on its next command and is closed; a re-check swaps in the user's current rights.
"""

from __future__ import annotations

import errno
from typing import Any

from pyftpdlib.authorizers import AuthenticationFailed
from pyftpdlib.filesystems import FilesystemError
from pyftpdlib.handlers import TLS_DTPHandler, TLS_FTPHandler
from pyftpdlib.handlers.ftp.data import _FileReadWriteError
from pyftpdlib.utils import strerror

from portside import log
from portside.auth.permissions import Actor
from portside.auth.sessions import Session
from portside.errors import Kind, PortsideError, TooManyRequests
from portside.ftp.backend import FtpBackend
from portside.ftp.limits import SessionGate, Ticket
from portside.ftp.tls import FtpTls
from portside.ftp.vfs import SiteFS
from portside.tools import metrics
from portside.tools.wire_errors import ftp_reply

logger = log.get("ftp")
LOGIN_FAILED = "Authentication problem: could not authenticate you"
SENDFILE_CHUNK = 256 * 1024


class Authorizer:
    """Credentials through `auth.login`; rights are not decided here but per path in `SiteFS`."""

    def validate_authentication(self, username: str, password: str, handler: PortsideHandler) -> None:
        try:
            result = handler.backend.login(username, password, handler.remote_ip)
        except TooManyRequests:
            raise AuthenticationFailed("too many failed login attempts, try again later") from None
        except PortsideError:
            raise AuthenticationFailed(LOGIN_FAILED) from None
        handler.actor, handler.credential = result.actor, result.credential

    def get_home_dir(self, username: str) -> str:
        return "/"

    def get_msg_login(self, username: str) -> str:
        return "Password ok, continue"

    def get_msg_quit(self, username: str) -> str:
        return "Goodbye"

    def has_perm(self, username: str, perm: str, path: str | None = None) -> bool:
        return True  # decided per path, per site, by SiteFS through auth.access

    def get_perms(self, username: str) -> str:
        return "elradfmwMT"

    def impersonate_user(self, username: str, password: str) -> None:
        pass

    def terminate_impersonation(self, username: str) -> None:
        pass


class PortsideDTP(TLS_DTPHandler):  # type: ignore[misc]
    # Reads stay at pyftpdlib's 64 KiB: `recv(n)` allocates n bytes first, and above glibc's 128 KiB
    # mmap threshold every read of a small file would map and fault in fresh pages (6x the cost of a
    # 10 KB read). Writes go out in bigger pieces: a download from a local store on a plain data
    # connection is sent with sendfile(2) in chunks of this size (TLS and object stores use send).
    ac_out_buffer_size = SENDFILE_CHUNK
    file_obj: Any
    transfer_finished: bool

    def handle_error(self) -> None:
        try:
            raise  # re-examine the exception being handled
        except _FileReadWriteError as err:
            cause = err.__cause__  # pyftpdlib wraps the store's OSError
            if isinstance(cause, OSError) and cause.errno == errno.EFBIG:
                self._resp = (f"{ftp_reply_for_size()} Upload exceeds the size limit; transfer aborted.", logger.info)
                self.close()
                return
        except Exception:
            pass
        super().handle_error()

    def close(self) -> None:
        """The file is closed first, and a store that fails to complete it (an object store's commit, a
        resumed upload's replacement, the size bound) answers an error instead of `226`."""
        f: Any = self.file_obj
        if not self._closed and f is not None and not f.closed:
            try:
                f.close()
            except Exception as exc:
                too_big = isinstance(exc, OSError) and exc.errno == errno.EFBIG
                if not too_big:
                    logger.warning("FTP: the store failed to complete %s: %s", f.name, type(exc).__name__)
                self.transfer_finished = False
                self._resp = (
                    f"{ftp_reply_for_size()} Upload exceeds the size limit; transfer aborted."
                    if too_big
                    else "451 The store could not complete the file; transfer aborted.",
                    logger.info,
                )
                self.file_obj = _Closed(str(f.name))
        super().close()


class _Closed:
    """Stands for a file whose close failed (pyftpdlib logs the transfer by its name)."""

    closed = True

    def __init__(self, name: str):
        self.name = name

    def close(self) -> None:
        pass


def ftp_reply_for_size() -> int:
    return ftp_reply(Kind.PAYLOAD_TOO_LARGE)


class PortsideHandler(TLS_FTPHandler):  # type: ignore[misc]
    backend: FtpBackend
    gate: SessionGate
    tls: FtpTls | None = None
    implicit = False
    abstracted_fs = SiteFS
    dtp_handler = PortsideDTP
    authorizer = Authorizer()
    use_sendfile = True  # used only where pyftpdlib can: binary, no TLS, a file with a descriptor
    max_login_attempts = 1
    auth_failed_timeout = 0.5
    banner = "Portside FTP ready."
    tcp_no_delay = True

    def __init__(self, conn: Any, server: Any, ioloop: Any = None):
        self.actor: Actor | None = None
        self.credential = ""
        self.session: Session | None = None
        self.ended: str | None = None
        self._greeted = False
        take = getattr(server, "take_ticket", None)
        self.ticket: Ticket | None = take() if take is not None else None  # this session's place (limits.py)
        super().__init__(conn, server, ioloop)
        metrics.connected("ftp")  # on_disconnect pairs with it

    @classmethod
    def get_ssl_context(cls) -> Any:
        if cls.tls is None:
            return None
        try:
            return cls.tls.context()
        except LookupError:
            logger.warning("FTPS: no certificate for %s", cls.tls.hostname)
            return None

    def handle(self) -> None:
        if self.implicit:
            if self.ssl_context is None:
                self.close()
                return
            self._pbsz = self._prot = True  # an implicit-TLS session protects its data connections too
            self.secure_connection(self.ssl_context)
            return  # the greeting follows the handshake
        super().handle()

    def handle_ssl_established(self) -> None:
        if self.implicit and not self._greeted:
            self._greeted = True
            super().handle()

    def ftp_AUTH(self, line: str) -> None:
        if self.ssl_context is None:
            self.respond("431 TLS is not available on this server.")
            return
        super().ftp_AUTH(line)

    def ftp_CWD(self, path: str) -> str | None:
        """Daptin's replies: `250 CD worked on <dir>` / `550 CD issue: <why> <dir>`."""
        try:
            self.fs.chdir(path)
        except (OSError, FilesystemError) as err:
            self.respond(f"550 CD issue: {strerror(err)} {self.fs.fs2ftp(path)}")
            return None
        self.respond(f"250 CD worked on {self.fs.cwd}")
        return path

    def ftp_REST(self, line: str) -> None:
        if not (line.isascii() and line.isdigit() and len(line) <= 18):  # no signs, no 10**30
            self.respond("501 Invalid REST parameter.")
            return
        super().ftp_REST(line)

    def process_command(self, cmd: str, *args: Any, **kwargs: Any) -> None:
        if self.ended is not None:
            self.respond(f"421 Session ended: {self.ended}.")
            self.close_when_done()
            return
        metrics.command("ftp", cmd, self.proto_cmds)
        super().process_command(cmd, *args, **kwargs)

    # -- session registry --------------------------------------------------------------------------

    def on_login(self, username: str) -> None:
        assert self.actor is not None
        try:
            self.session = self.backend.open_session(self.actor, self.credential, self._recheck, self._end)
        except PortsideError:
            logger.exception("registering an FTP session failed")

    def _recheck(self, actor: Actor) -> None:
        self.actor = actor  # rights are decided per command from the current actor

    def _end(self, reason: str) -> None:
        self.ended = reason  # read by the session's own thread at its next command

    def _close_session(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            self.backend.close_session(session)

    def on_logout(self, username: str) -> None:
        self._close_session()

    def on_disconnect(self) -> None:
        metrics.disconnected("ftp")
        self._close_session()

    def log_transfer(self, cmd: str, filename: str, receive: bool, completed: bool, elapsed: float, bytes: int) -> None:
        (metrics.received if receive else metrics.sent)("ftp", bytes)
        super().log_transfer(cmd, filename, receive, completed, elapsed, bytes)

    def close(self) -> None:
        ticket, self.ticket = self.ticket, None
        if ticket is not None:
            ticket.release()
        super().close()

    def flush_account(self) -> None:
        self._close_session()
        self.actor = None
        super().flush_account()


def handler_class(
    backend: FtpBackend,
    tls: FtpTls | None,
    gate: SessionGate,
    *,
    implicit: bool,
    require_tls: bool,
    passive_ports: list[int] | None,
    public_host: str | None,
    idle_timeout: int,
) -> type[PortsideHandler]:
    attrs: dict[str, Any] = {
        "backend": backend,
        "tls": tls,
        "gate": gate,
        "implicit": implicit,
        "tls_control_required": require_tls,
        "tls_data_required": require_tls,
        "passive_ports": passive_ports,
        "masquerade_address": public_host or None,
        "timeout": idle_timeout,
        "ssl_context": None,
    }
    return type("PortsideFTPSession", (PortsideHandler,), attrs)
