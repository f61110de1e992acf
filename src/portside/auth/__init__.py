"""Identity, tokens and permissions: the one place that decides who may do what."""
