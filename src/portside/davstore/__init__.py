"""CalDAV/CardDAV data: tables, object parsing and indexing, queries, the store (L2)."""
