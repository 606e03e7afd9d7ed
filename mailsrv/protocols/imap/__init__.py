"""IMAP4rev1 server."""
