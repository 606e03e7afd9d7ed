"""Tests for mailsrv.auth: password hashes, account files, directory, checkers."""
