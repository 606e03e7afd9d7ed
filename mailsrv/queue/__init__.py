"""
The outbound queue: a durable spool, a scheduler with retries, MX and
relay delivery, and delivery status notifications.
"""
