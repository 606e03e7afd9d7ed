"""Mail storage backends (Maildir on disk, memory for tests)."""
