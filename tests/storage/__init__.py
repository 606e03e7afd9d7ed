"""Tests for mailsrv.storage: the memory and Maildir backends."""
