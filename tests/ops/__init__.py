"""
Tests for operator tooling: PROXY protocol, reload, doctor, DNS records, import.
"""
