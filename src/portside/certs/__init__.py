"""Certificates: one service for every TLS port (rows of `certificate`, self-signed, ACME, SNI)."""
