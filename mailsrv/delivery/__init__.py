"""Delivery targets: where the pipeline hands a message."""
