"""Feeds: RSS 2.0, Atom 1.0 and JSON Feed 1.1 of any table, and a WebSub hub pushing them."""
