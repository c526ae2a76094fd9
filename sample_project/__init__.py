"""A small DRF API that reproduces four public APIs' idempotency with django-idempotency."""
