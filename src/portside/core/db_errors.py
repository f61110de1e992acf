"""What a database error means, from the driver's error code: SQLite's (extended) result code, PostgreSQL's
SQLSTATE (asyncpg), MariaDB/MySQL's error number (asyncmy). Never from the message text, which differs
between versions, languages and drivers.

`classify(exc)` takes the SQLAlchemy wrapper or the driver's own exception (the Yjs store's loop-side
sqlite3 connection raises those directly) and returns a `Fault`, or None for anything it does not know
(a bug or an outage: the caller lets it through as an internal error).
"""

from __future__ import annotations

import sqlite3
from enum import StrEnum

from sqlalchemy.exc import TimeoutError as PoolTimeout


class Fault(StrEnum):
    UNIQUE = "unique_violation"
    FOREIGN_KEY = "fk_violation"
    NOT_NULL = "not_null_violation"
    CHECK = "check_violation"
    OUT_OF_RANGE = "out_of_range"  # the value does not fit its column: range, length, type, encoding
    LOCKED = "lock"  # another writer holds the lock (SQLite busy/locked, lock wait timeout): try again
    RETRY = "retry"  # deadlock or serialization failure: the transaction was rolled back, run it again


# SQLite: extended result codes first, then the primary code (the low byte)
_SQLITE: dict[int, Fault] = {
    2067: Fault.UNIQUE,  # SQLITE_CONSTRAINT_UNIQUE
    1555: Fault.UNIQUE,  # SQLITE_CONSTRAINT_PRIMARYKEY
    787: Fault.FOREIGN_KEY,  # SQLITE_CONSTRAINT_FOREIGNKEY
    1299: Fault.NOT_NULL,  # SQLITE_CONSTRAINT_NOTNULL
    275: Fault.CHECK,  # SQLITE_CONSTRAINT_CHECK
    5: Fault.LOCKED,  # SQLITE_BUSY
    6: Fault.LOCKED,  # SQLITE_LOCKED
    18: Fault.OUT_OF_RANGE,  # SQLITE_TOOBIG
    20: Fault.OUT_OF_RANGE,  # SQLITE_MISMATCH
}

# PostgreSQL SQLSTATE: exact codes, then the two-character class
_PG: dict[str, Fault] = {
    "23505": Fault.UNIQUE,
    "23503": Fault.FOREIGN_KEY,
    "23502": Fault.NOT_NULL,
    "23514": Fault.CHECK,
    "40001": Fault.RETRY,  # serialization_failure
    "40P01": Fault.RETRY,  # deadlock_detected
    "55P03": Fault.LOCKED,  # lock_not_available
    "54000": Fault.OUT_OF_RANGE,  # program_limit_exceeded (an index row too large for the value)
    "22": Fault.OUT_OF_RANGE,  # class 22, data exception (asyncpg's client-side encoding errors are 22000)
}

# MariaDB/MySQL error numbers (SQLSTATE 23000 is shared by all constraint errors, so the number decides)
_MYSQL: dict[int, Fault] = {
    1062: Fault.UNIQUE,  # ER_DUP_ENTRY
    1586: Fault.UNIQUE,  # ER_DUP_ENTRY_WITH_KEY_NAME
    1451: Fault.FOREIGN_KEY,  # ER_ROW_IS_REFERENCED_2
    1452: Fault.FOREIGN_KEY,  # ER_NO_REFERENCED_ROW_2
    1216: Fault.FOREIGN_KEY,  # ER_NO_REFERENCED_ROW
    1217: Fault.FOREIGN_KEY,  # ER_ROW_IS_REFERENCED
    1048: Fault.NOT_NULL,  # ER_BAD_NULL_ERROR
    1364: Fault.NOT_NULL,  # ER_NO_DEFAULT_FOR_FIELD
    4025: Fault.CHECK,  # ER_CONSTRAINT_FAILED (MariaDB)
    3819: Fault.CHECK,  # ER_CHECK_CONSTRAINT_VIOLATED (MySQL)
    1213: Fault.RETRY,  # ER_LOCK_DEADLOCK
    1205: Fault.LOCKED,  # ER_LOCK_WAIT_TIMEOUT
    1264: Fault.OUT_OF_RANGE,  # ER_WARN_DATA_OUT_OF_RANGE
    1406: Fault.OUT_OF_RANGE,  # ER_DATA_TOO_LONG
    1265: Fault.OUT_OF_RANGE,  # WARN_DATA_TRUNCATED
    1366: Fault.OUT_OF_RANGE,  # ER_TRUNCATED_WRONG_VALUE_FOR_FIELD
    1292: Fault.OUT_OF_RANGE,  # ER_TRUNCATED_WRONG_VALUE
    1367: Fault.OUT_OF_RANGE,  # ER_ILLEGAL_VALUE_FOR_TYPE
    1690: Fault.OUT_OF_RANGE,  # ER_DATA_OUT_OF_RANGE
    3140: Fault.OUT_OF_RANGE,  # ER_INVALID_JSON_TEXT
    4038: Fault.OUT_OF_RANGE,  # ER_JSON_SYNTAX (MariaDB)
}


def classify(exc: BaseException) -> Fault | None:
    """The fault a database error stands for, or None when it is not one of the known faults."""
    if isinstance(exc, OverflowError):  # sqlite3 refuses integers beyond 64 bits before binding them
        return Fault.OUT_OF_RANGE
    orig = getattr(exc, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's exception
    driver = orig if isinstance(orig, BaseException) else exc
    if isinstance(driver, OverflowError):
        return Fault.OUT_OF_RANGE
    if isinstance(driver, sqlite3.Error):
        code = driver.sqlite_errorcode
        return _SQLITE.get(code) or _SQLITE.get(code & 0xFF)
    sqlstate = getattr(driver, "sqlstate", None)
    errno = _mysql_errno(driver)
    if errno is not None:
        return _MYSQL.get(errno)
    if isinstance(sqlstate, str) and len(sqlstate) == 5:
        return _PG.get(sqlstate) or _PG.get(sqlstate[:2])
    return None


def _mysql_errno(driver: BaseException) -> int | None:
    """asyncmy (like PyMySQL) raises its errors as `Error(errno, message)`: the number, never the message."""
    if type(driver).__module__.partition(".")[0] not in ("asyncmy", "pymysql"):
        return None
    errno = driver.args[0] if driver.args else None
    return errno if isinstance(errno, int) and not isinstance(errno, bool) else None


def busy(exc: BaseException) -> bool:
    """The database stayed busy (a pool wait or a lock that timed out, a deadlock victim): the caller may try
    again, and is told so (HTTP 503 with Retry-After, a /live `unavailable` refusal)."""
    return isinstance(exc, PoolTimeout) or classify(exc) in (Fault.LOCKED, Fault.RETRY)
