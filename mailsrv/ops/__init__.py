"""
Operator tooling: live reload, diagnosis, DNS records, migration.
"""
