"""Payments, cards, letters and identity checks: one endpoint group per reference API."""
