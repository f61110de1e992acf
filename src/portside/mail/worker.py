"""A worker process of `mail.workers`: `python -m portside.mail.worker FD`.

It reads jobs from the socket FD (frames: 4-byte length, 8-byte job id, pickled `analysis.Job`), runs
`analysis.analyse` for each in a few threads (a check waiting on DNS does not hold up the others) and
writes each outcome back as soon as it is done (same framing: `(True, Analysis)` or `(False, "why")`).
It exits when the socket closes: when the server closes the pool, and also when the server dies, however
it dies (the kernel closes the server's end), so a worker never outlives its server. SIGINT is ignored (a
Ctrl-C reaches the whole process group; the server decides when its workers stop).
"""

from __future__ import annotations

import contextlib
import pickle
import signal
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from portside.mail import analysis

THREADS = 4
HEAD = 12  # length (4 bytes) + job id (8 bytes)


def _read(stream: socket.SocketIO, n: int) -> bytes | None:
    """Exactly `n` bytes, or None at the end of the stream."""
    chunks: list[bytes] = []
    while n > 0:
        chunk = stream.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def serve(sock: socket.socket) -> None:
    stream = socket.SocketIO(sock, "rb")
    lock = threading.Lock()

    def run(job_id: bytes, payload: bytes) -> None:
        try:
            out: tuple[bool, object] = (True, analysis.analyse(pickle.loads(payload)))
        except Exception as exc:  # reported to the caller (a 451 there); the worker goes on
            out = (False, f"{type(exc).__name__}: {exc}")
        data = pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)
        # OSError: the server is gone; the reader sees the end of the stream and returns
        with lock, contextlib.suppress(OSError):
            sock.sendall(len(data).to_bytes(4, "big") + job_id + data)

    with ThreadPoolExecutor(THREADS, thread_name_prefix="mail-job") as pool:
        while True:
            head = _read(stream, HEAD)
            if head is None:
                return
            payload = _read(stream, int.from_bytes(head[:4], "big"))
            if payload is None:
                return
            pool.submit(run, head[4:], payload)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=int(argv[1]))
    try:
        serve(sock)
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
