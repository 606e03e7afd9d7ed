"""POP3 server."""
