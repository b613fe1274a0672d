"""Lifecycle events: CloudEvents built from the registry's outbox, delivered to signed webhooks."""
