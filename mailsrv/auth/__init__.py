"""Identity: password hashes, the account and alias directory, cred checkers and realm, SASL."""
