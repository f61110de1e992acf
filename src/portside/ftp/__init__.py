"""The FTP/FTPS edge: pyftpdlib's threaded server over the sites' cloud stores (see server.py)."""
