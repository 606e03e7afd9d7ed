"""Fakes and helpers for tests, shipped so that other code can test against mailsrv."""
