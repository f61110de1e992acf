"""The CalDAV/CardDAV edge (L4), mounted on the HTTP port by the runtime."""
