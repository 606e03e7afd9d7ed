"""ManageSieve server (RFC 5804)."""
