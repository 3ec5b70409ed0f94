"""A locked-down single-node broker for the security tests: SASL_SSL, SCRAM, ACLs.

`deploy/local/kafka.sh` starts it on free ports in the test's directory, with
`DECLIC_KAFKA_EXTRA_CONFIG` (the listeners, TLS, SCRAM and the authorizer below) and
`DECLIC_KAFKA_FORMAT_ARGS` (the SCRAM users, created at format time). Certificates
come from trustme: a CA, the broker's certificate for 127.0.0.1, and a client
certificate whose key is encrypted (the SASL_SSL listener requires one, so that
`kafka_ssl_certfile`, `kafka_ssl_keyfile` and `kafka_ssl_key_password` are exercised).
"""

from __future__ import annotations

import os
import secrets
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import trustme
from cryptography.hazmat.primitives import serialization

from engine.child_process import free_port
from engine.settings import Settings, load_settings
from tests.integration.test_resilience import BROKER_SECONDS, KAFKA_SH, _port_pair

MECHANISM = "SCRAM-SHA-512"
USERS = ("admin", "worker", "operator", "nobody")
INPUTS = (
    "sessions",
    "custom-events",
    "interactions",
    "profiles",
    "test-sends",
    "user-requests",
)
OUTPUTS = ("deliveries", "impressions", "conversions", "dead-letters", "user-audit")


def role_acls(prefix: str, app_id: str) -> dict[str, list[tuple[list[str], list[str], bool]]]:
    """Return the ACLs of each role: (operations, resources, prefixed pattern) per line.

    What the README shows. A resource is an AclCommand option (`--topic=NAME`...);
    Read and Write imply Describe.
    """

    def topics(*names: str) -> list[str]:
        return [f"--topic={prefix}{name}" for name in names]

    state = f"{app_id}-state-changelog"
    return {
        # `declic worker`: its inputs, the catalog, the figures and history (/diagnose), its
        # state; its outputs; its group; its partitions' transactional producers.
        "worker": [
            (
                ["Read"],
                [
                    *topics(*INPUTS, "engagements", "engagement-changelog", "engagement-stats"),
                    *topics(state),
                    f"--group={prefix}{app_id}",
                ],
                False,
            ),
            (["Write"], topics(*OUTPUTS, "engagement-stats", state), False),
            (["Write"], [f"--transactional-id={prefix}{app_id}-engine-p"], True),
        ],
        # `declic topics`, `engagements *` (apply publishes in a transaction), `publish`,
        # `engagements test-send` (reads the delivery), `diagnose`, `users forget` (reads
        # its audit record), `users show` (reads the state changelog).
        "operator": [
            (["Create", "Describe"], [f"--topic={prefix}"], True),
            (
                ["Read"],
                [
                    *topics("engagements", "engagement-changelog", "engagement-stats"),
                    *topics("deliveries", "user-audit", state),
                ],
                False,
            ),
            (["Write"], topics("engagements", "engagement-changelog", *INPUTS), False),
            (["Write"], [f"--transactional-id={prefix}{app_id}-admin-"], True),
        ],
        # `declic bench`: topics, groups and transactional ids of its own, all prefixed
        # `<prefix>bench-` (the Faust floor creates its own internal topic there too).
        "bench": [
            (["All"], [f"--topic={prefix}bench-", f"--group={prefix}bench-"], True),
            (["Write"], [f"--transactional-id={prefix}bench-"], True),
        ],
    }


def _pkcs8(key_pem: bytes, password: bytes | None = None) -> bytes:
    """Return a PEM key as PKCS#8 (what Kafka's PEM keystore reads), encrypted if asked."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


class SecureBroker:
    """A single-node broker: PLAINTEXT (inter-broker, ACL administration) and SASL_SSL."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.port = _port_pair()  # PLAINTEXT; the controller listens on port + 1
        self.sasl_port = free_port()
        while self.sasl_port in (self.port, self.port + 1):
            self.sasl_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.sasl_port}"
        # Distinctive values: the tests grep every output for them.
        self.passwords = {user: f"pw-{user}-{secrets.token_hex(12)}" for user in USERS}
        self.key_password = f"keypw-{secrets.token_hex(12)}"
        self._write_files()

    def _write_files(self) -> None:
        certs = self.run_dir / "certs"
        certs.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        self.cafile = certs / "ca.pem"
        ca.cert_pem.write_to_path(str(self.cafile))
        server = ca.issue_cert("127.0.0.1")
        # Kafka's PEM keystore: the unencrypted PKCS#8 key, then the certificate chain.
        keystore = certs / "broker.pem"
        keystore.write_bytes(
            _pkcs8(server.private_key_pem.bytes())
            + b"".join(blob.bytes() for blob in server.cert_chain_pems)
        )
        client = ca.issue_cert("client.declic.test")
        self.certfile = certs / "client.pem"
        self.keyfile = certs / "client.key"
        client.cert_chain_pems[0].write_to_path(str(self.certfile))
        self.keyfile.write_bytes(_pkcs8(client.private_key_pem.bytes(), self.key_password.encode()))
        # A line of the key as stored (encrypted) and of the key itself.
        self.key_material = [
            self.keyfile.read_text().splitlines()[1],
            client.private_key_pem.bytes().decode().splitlines()[1],
        ]
        self.extra_config = self.run_dir / "secure.properties"
        self.extra_config.write_text(
            f"""
listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.port + 1},\
SASL_SSL://127.0.0.1:{self.sasl_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{self.port},SASL_SSL://127.0.0.1:{self.sasl_port}
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms={MECHANISM}
listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.client.auth=required
ssl.keystore.type=PEM
ssl.keystore.location={keystore}
ssl.truststore.type=PEM
ssl.truststore.location={self.cafile}
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
# The PLAINTEXT listeners (inter-broker, controller, and the tests' ACL administration
# through `kafka.sh acls`) authenticate nobody: their principal, User:ANONYMOUS, must be a
# super user. Test-only: on a real cluster that listener would not be reachable by clients.
super.users=User:ANONYMOUS;User:admin
"""
        )

    def kafka_sh(self, *args: str) -> str:
        """Run kafka.sh for this broker (start, stop, acls ...); return its stdout."""
        scram = " ".join(
            f"--add-scram {MECHANISM}=[name={user},password={password}]"
            for user, password in self.passwords.items()
        )
        env = {
            **os.environ,
            "DECLIC_KAFKA_PORT": str(self.port),
            "DECLIC_KAFKA_RUN_DIR": str(self.run_dir / "kafka"),
            "DECLIC_KAFKA_TIMEOUT": str(BROKER_SECONDS),
            "DECLIC_KAFKA_EXTRA_CONFIG": str(self.extra_config),
            "DECLIC_KAFKA_FORMAT_ARGS": scram,
        }
        result = subprocess.run(
            ["bash", str(KAFKA_SH), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=BROKER_SECONDS + 120,
            check=False,
        )
        assert result.returncode == 0, f"kafka.sh {args[0]} failed:\n{result.stderr[-3000:]}"
        return result.stdout

    def allow(self, user: str, role: str, prefix: str, app_id: str) -> None:
        """Give `user` the ACLs of `role` (see `role_acls`), a few AclCommands at a time."""
        commands = [
            [
                "acls",
                "--add",
                f"--allow-principal=User:{user}",
                *(f"--operation={operation}" for operation in operations),
                *(["--resource-pattern-type=prefixed"] if prefixed else []),
                *resources,
            ]
            for operations, resources, prefixed in role_acls(prefix, app_id)[role]
        ]
        with ThreadPoolExecutor(max_workers=3) as pool:  # a JVM each: ~1 s, mostly start-up
            list(pool.map(lambda command: self.kafka_sh(*command), commands))

    def settings(self, user: str, password: str | None = None, **overrides: Any) -> Settings:
        """Return settings connecting as `user` over SASL_SSL (its password unless given)."""
        return load_settings(
            {
                "kafka_bootstrap": self.bootstrap,
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": MECHANISM,
                "kafka_sasl_username": user,
                "kafka_sasl_password": password or self.passwords[user],
                "kafka_ssl_cafile": self.cafile,
                "kafka_ssl_certfile": self.certfile,
                "kafka_ssl_keyfile": self.keyfile,
                "kafka_ssl_key_password": self.key_password,
                **overrides,
            }
        )

    def secrets(self) -> list[str]:
        """Return what must never be printed: every password, the key's password and body."""
        return [*self.passwords.values(), self.key_password, *self.key_material]
