"""Locked-down brokers without a broker: security settings, TLS contexts, children's
environment, and how Kafka's refusals are told apart from an unreachable broker."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from pathlib import Path
from typing import Any

import faust
import pytest
import trustme
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    NotLeaderForPartitionError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
from cryptography.hazmat.primitives import serialization

from engine.bench.faust_floor import broker_credentials
from engine.cli import main
from engine.errors import ConfigError, KafkaAuthenticationFailed, KafkaNotAuthorized
from engine.retry import access_error, retry_kafka_forever
from engine.settings import Settings, load_settings
from engine.worker_process import WorkerProcess

KEY_PASSWORD = "key-secret-4711"
SASL_PASSWORD = "sasl-secret-0815"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA file, and a client certificate with its key encrypted by KEY_PASSWORD."""
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    client = ca.issue_cert("client.declic.test")
    files = {name: directory / f"{name}.pem" for name in ("ca", "cert", "key", "plain_key")}
    ca.cert_pem.write_to_path(str(files["ca"]))
    client.cert_chain_pems[0].write_to_path(str(files["cert"]))
    client.private_key_pem.write_to_path(str(files["plain_key"]))
    key = serialization.load_pem_private_key(client.private_key_pem.bytes(), password=None)
    files["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
        )
    )
    return files


def _sasl_ssl(tls: dict[str, Path], **overrides: Any) -> Settings:
    return load_settings(
        {
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_sasl_username": "worker",
            "kafka_sasl_password": SASL_PASSWORD,
            "kafka_ssl_cafile": tls["ca"],
            "kafka_ssl_certfile": tls["cert"],
            "kafka_ssl_keyfile": tls["key"],
            "kafka_ssl_key_password": KEY_PASSWORD,
            **overrides,
        }
    )


def test_sasl_ssl_clients_get_a_verifying_tls_context_and_the_credentials(
    tls: dict[str, Path],
) -> None:
    options = _sasl_ssl(tls).kafka_producer_options()
    context = options.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "worker"
    assert options["sasl_plain_password"] == SASL_PASSWORD
    assert options["enable_idempotence"] is True
    ssl_only = load_settings({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": tls["ca"]})
    assert isinstance(ssl_only.kafka_client_options()["ssl_context"], ssl.SSLContext)
    assert "ssl_context" not in load_settings().kafka_client_options()


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"kafka_sasl_username": None}, "DECLIC_KAFKA_SASL_USERNAME: required"),
        ({"kafka_sasl_password": None}, "DECLIC_KAFKA_SASL_PASSWORD: required"),
        ({"kafka_sasl_password": ""}, "DECLIC_KAFKA_SASL_PASSWORD: required"),
        ({"kafka_sasl_mechanism": None}, "DECLIC_KAFKA_SASL_MECHANISM: required"),
        (
            {"kafka_ssl_keyfile": None, "kafka_ssl_key_password": None},
            "DECLIC_KAFKA_SSL_KEYFILE: req",
        ),
        ({"kafka_ssl_certfile": None}, "DECLIC_KAFKA_SSL_CERTFILE: required with a client key"),
        (
            {"kafka_ssl_cafile": Path("/nonexistent/ca.pem")},
            "DECLIC_KAFKA_SSL_CAFILE: no such file",
        ),
        ({"kafka_ssl_key_password": None}, "DECLIC_KAFKA_SSL_KEYFILE: .* is encrypted"),
        ({"kafka_ssl_key_password": "wrong"}, "DECLIC_KAFKA_SSL_KEY_PASSWORD: does not decrypt"),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT"},
            "DECLIC_KAFKA_SSL_CAFILE: set, but .* no TLS",
        ),
        ({"kafka_security_protocol": "SSL"}, "DECLIC_KAFKA_SASL_USERNAME: set, but .* no SASL"),
    ],
)
def test_inconsistent_security_settings_name_the_setting(
    tls: dict[str, Path], overrides: dict[str, Any], named: str
) -> None:
    settings = _sasl_ssl(tls, **overrides)
    with pytest.raises(ConfigError, match=named) as refused:
        settings.kafka_client_options()
    assert KEY_PASSWORD not in str(refused.value) and SASL_PASSWORD not in str(refused.value)


def test_a_file_that_is_no_ca_certificate_is_named(tls: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="DECLIC_KAFKA_SSL_CAFILE: no CA certificate"):
        _sasl_ssl(tls, kafka_ssl_cafile=tls["plain_key"]).kafka_client_options()


def test_invalid_security_settings_stop_commands_and_workers_with_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DECLIC_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("DECLIC_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("DECLIC_KAFKA_SASL_PASSWORD", SASL_PASSWORD)
    for command in (["topics"], ["worker", "--data-dir", "/nonexistent/declic"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert (
            "DECLIC_KAFKA_SASL_USERNAME (--kafka-sasl-username): "
            "required with security protocol SASL_SSL" in err
        )
        assert SASL_PASSWORD not in err


def test_children_get_the_secrets_themselves_not_their_mask(
    tls: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = _sasl_ssl(tls)
    without_key = _sasl_ssl(
        tls, kafka_ssl_certfile=None, kafka_ssl_keyfile=None, kafka_ssl_key_password=None
    )
    monkeypatch.setenv("DECLIC_KAFKA_SSL_KEY_PASSWORD", "the parent's, not the child's")
    environment = WorkerProcess(settings, tmp_path / "w.log").environment()
    assert environment["DECLIC_KAFKA_SASL_PASSWORD"] == SASL_PASSWORD
    assert environment["DECLIC_KAFKA_SSL_KEY_PASSWORD"] == KEY_PASSWORD
    assert environment["DECLIC_KAFKA_SSL_KEYFILE"] == str(tls["key"])
    assert environment["DECLIC_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    environment = WorkerProcess(without_key, tmp_path / "w.log").environment()
    assert "DECLIC_KAFKA_SSL_KEY_PASSWORD" not in environment  # not the parent's either


def test_the_faust_floor_gets_the_same_credentials(tls: dict[str, Path]) -> None:
    credentials = broker_credentials(_sasl_ssl(tls))
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.username == "worker" and credentials.password == SASL_PASSWORD
    assert isinstance(credentials.ssl_context, ssl.SSLContext)
    assert SASL_PASSWORD not in repr(credentials)
    assert broker_credentials(load_settings()) is None


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (TopicAuthorizationFailedError("t1"), "not authorized to use topic 't1'"),
        (
            TopicAuthorizationFailedError("cannot create topic 'p-x': Authorization failed."),
            "not authorized to create topic 'p-x' .*Create",
        ),
        (GroupAuthorizationFailedError("g"), "not authorized to use group 'g' .*Read"),
        (
            TransactionalIdAuthorizationFailed("p-declic-engine-p0"),
            "transactional id 'p-declic-engine-p0' .*Write",
        ),
    ],
)
def test_authorization_errors_name_the_resource_and_the_permission(
    error: Exception, message: str
) -> None:
    refused = access_error(error)
    assert isinstance(refused, KafkaNotAuthorized)
    assert re.search(message, str(refused)), refused


async def test_a_refused_write_is_named_when_a_send_future_reports_it() -> None:
    sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    sent.set_exception(TopicAuthorizationFailedError({"p-sessions"}))
    with pytest.raises(TopicAuthorizationFailedError) as raised:
        await sent  # what the producer's sender does with a refused produce request
    assert (
        "not authorized to write to topic 'p-sessions' (TOPIC_AUTHORIZATION_FAILED: no ACL "
        "allows Write on it)"
    ) in str(access_error(raised.value))


def test_a_connection_error_is_an_authentication_failure_only_when_aiokafka_logged_one() -> None:
    before = time.monotonic()
    assert access_error(KafkaConnectionError("Unable to bootstrap"), since=before) is None
    logging.getLogger("aiokafka").error(
        'Unable connect to "%s:%s": %s',
        "127.0.0.1",
        9093,
        SaslAuthenticationFailed("invalid credentials with SASL mechanism SCRAM-SHA-512"),
    )
    refused = access_error(KafkaConnectionError("Unable to bootstrap"), since=before)
    assert isinstance(refused, KafkaAuthenticationFailed)
    assert "authentication failed: invalid credentials" in str(refused)
    later = time.monotonic()
    assert access_error(KafkaConnectionError("Unable to bootstrap"), since=later) is None
    assert access_error(NotLeaderForPartitionError()) is None


async def test_refusals_are_not_retried_but_an_unreachable_broker_is() -> None:
    calls: list[str] = []

    async def refused() -> None:
        calls.append("refused")
        raise GroupAuthorizationFailedError("declic")

    with pytest.raises(KafkaNotAuthorized, match=r"group 'declic'.*; could not join the group"):
        await retry_kafka_forever(refused, "join the group")
    assert calls == ["refused"]

    async def unreachable_once() -> str:
        calls.append("unreachable")
        if calls.count("unreachable") == 1:
            raise KafkaConnectionError("Unable to bootstrap")
        return "joined"

    assert await retry_kafka_forever(unreachable_once, "join the group") == "joined"
    assert calls.count("unreachable") == 2
