"""Key prefixes of a partition store: one place, since several modules read the same keys."""

USER_PREFIX = b"u:"  # user state, by user id
DELIVERY_PREFIX = b"d:"  # delivery state, by delivery id
PENDING_PREFIX = b"p:"  # delayed deliveries, by due time then delivery id
STATS_PREFIX = b"s:"  # engagement figures, by engagement id
