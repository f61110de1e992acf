"""Mail as data (L2): tables, the message store (UIDs, flags, raw messages), accounts and mailboxes."""
