"""Permission mask values (bit layout in auth.permissions). Data, so the data layer can stamp defaults."""

from __future__ import annotations

PEEK, READ, CREATE, UPDATE, DELETE, EXECUTE, REFER = 1, 2, 4, 8, 16, 32, 64
OWNER_SHIFT, GROUP_SHIFT = 7, 14
AUTH_EXECUTE = 1 << 21
ALLOW_ALL = 2097151  # every bit 0-20: the open state before the first administrator
DEFAULT_PERMISSION = 561441  # guest peek+execute, owner read+execute, group read+execute
ACTION_DEFAULT = 2085120  # built-in actions once an administrator exists
# schema actions without Permission once an administrator exists: any signed-in user may execute
ACTION_SCHEMA_DEFAULT = AUTH_EXECUTE | (READ | EXECUTE) << OWNER_SHIFT | (READ | EXECUTE) << GROUP_SHIFT
OWNER_ALL = 127 << OWNER_SHIFT
GROUP_ALL = 127 << GROUP_SHIFT


def guest(*rights: int) -> int:
    """The guest block with these rights (bits 0-6)."""
    return _block(rights)


def owner(*rights: int) -> int:
    """The owner block with these rights (bits 7-13)."""
    return _block(rights) << OWNER_SHIFT


def group(*rights: int) -> int:
    """The group block with these rights (bits 14-20)."""
    return _block(rights) << GROUP_SHIFT


def combine(*masks: int) -> int:
    """One mask granting everything the given masks grant."""
    out = 0
    for m in masks:
        out |= m
    return out


def _block(rights: tuple[int, ...]) -> int:
    out = 0
    for r in rights:
        assert r in (PEEK, READ, CREATE, UPDATE, DELETE, EXECUTE, REFER), r
        out |= r
    return out


def is_mask(value: int) -> bool:
    """A permission mask uses bits 0-21 only."""
    return 0 <= value < (1 << 22)


ADMIN_GROUP = "administrators"
USERS_GROUP = "users"
GUESTS_GROUP = "guests"
