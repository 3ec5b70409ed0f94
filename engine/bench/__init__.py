"""`declic bench`: measure the engine against a raw Kafka ceiling and a plain Faust floor."""
