"""Helpers for the compatibility tests: raw Kafka wire codec, client helpers, the acked producer."""
