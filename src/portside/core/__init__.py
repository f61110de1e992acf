"""Data layer: schema, field types, tables, migration, database, queries, records, events."""
