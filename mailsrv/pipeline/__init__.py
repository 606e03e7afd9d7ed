"""The message pipeline: every accepted message passes through here."""
