"""The topics `declic topics` creates: names, partitions and configuration."""

from __future__ import annotations

import pytest
from aiokafka.errors import InvalidReplicationFactorError, TopicAlreadyExistsError

from engine.settings import load_settings
from engine.stream.topics import _raise_creation_errors, topic_specs


def test_three_replicas_need_two_in_sync_for_every_write() -> None:
    specs = topic_specs(load_settings({"replication_factor": 3, "partitions": 6}))
    assert {spec.replication_factor for spec in specs} == {3}
    assert all(spec.topic_configs["min.insync.replicas"] == "2" for spec in specs)
    changelog = next(spec for spec in specs if spec.name.endswith("state-changelog"))
    assert changelog.topic_configs["cleanup.policy"] == "compact"
    assert changelog.num_partitions == 6


def test_a_single_replica_keeps_the_broker_default() -> None:
    specs = topic_specs(load_settings({"replication_factor": 1}))
    assert all("min.insync.replicas" not in spec.topic_configs for spec in specs)


def test_a_topic_the_broker_refused_to_create_is_an_error_not_a_silence() -> None:
    class Response:
        topic_errors = [
            ("ok", 0, None),
            ("raced", TopicAlreadyExistsError.errno, "exists"),
            ("short", InvalidReplicationFactorError.errno, "only 2 broker(s) are registered"),
        ]

    with pytest.raises(InvalidReplicationFactorError, match="'short': only 2 broker"):
        _raise_creation_errors(Response())
