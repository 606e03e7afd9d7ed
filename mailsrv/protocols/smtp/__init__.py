"""SMTP server for the MX and submission endpoints."""
