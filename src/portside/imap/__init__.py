"""The IMAP4rev1 edge: protocol engine (parser, session state machine, one module per command family)
over the `store.Account` protocol, and its listener."""
