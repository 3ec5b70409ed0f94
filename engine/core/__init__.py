"""The pure matching core: no I/O, no clock, deterministic; the Kafka shell drives it.

Modules: ``timestamps`` (parse/format), ``operators`` (filter predicates), ``bucketing``
(percentage hashing), ``events`` (input records), ``engagements`` and ``catalog`` (compiled
engagements), ``state`` (per-user and per-delivery state), ``matcher`` (per-event
evaluation), ``deliveries`` and ``interactions`` (output records).
"""
