"""Per-endpoint policy: TLS mode and authentication rules, and the listeners built from them."""
