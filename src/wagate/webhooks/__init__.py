"""Webhook delivery: the requests (formats and signatures), the delivery queue, the dispatcher."""
