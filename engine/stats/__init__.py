"""Per-engagement figures for `declic diagnose`: counted by workers, shared through Kafka."""
