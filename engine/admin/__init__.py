"""Operator commands: manage engagements, read their history, send tests."""
