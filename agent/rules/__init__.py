"""Decisions taken on the gateway, in memory, from hub events: self-checkout baskets and exit gates."""
