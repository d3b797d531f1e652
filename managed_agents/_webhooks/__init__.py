"""Webhooks: signed, durable notifications when work finishes (Standard Webhooks)."""
