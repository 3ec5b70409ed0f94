"""The pure matching core: no I/O, no clock, deterministic; the Kafka shell drives it.

Modules: ``timestamps`` (parse/format), ``operators`` (filter predicates), ``bucketing``
(percentage hashing), ``events`` (input records), ``engagements`` and ``catalog`` (compiled
engagements) with their parts ``schedule`` and ``local_time`` (time windows and zones),
``durations`` (the bound on every duration), ``variants`` (experiments and control),
``counters`` (event-count filters), ``pending`` (delays and cancellation), ``conversions``
(goals); ``policy`` and ``caps`` (engine-wide rules); ``state`` and ``delivery_state``
(per-user and per-delivery state); ``matcher`` (per-event evaluation) with ``tracking``
(counts, cancels, conversions); ``release`` (due delayed deliveries); ``deliveries``,
``interactions`` and ``test_sends`` (output records).
"""
