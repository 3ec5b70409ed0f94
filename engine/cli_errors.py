"""How the command line reports what went wrong: one `declic: error:` line per problem,
in the user's own names, with an exit status saying whose problem it is."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import traceback
from typing import NoReturn

from engine import __version__
from engine.errors import ConfigError, DeclicError, KafkaAccessError
from engine.settings import DEFAULT_BOOTSTRAP

EXIT_INVALID = 2
EXIT_KAFKA = 3
EXIT_BUG = 1


class DeclicArgumentParser(argparse.ArgumentParser):
    """An argument parser whose mistakes read like every other Declic error."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print_error(f"{message} (see {self.prog} --help)")
        raise SystemExit(EXIT_INVALID)


def print_error(text: str) -> None:
    """Print each line of `text` as a `declic: error:` line."""
    for line in text.splitlines() or [""]:
        print(f"declic: error: {line}", file=sys.stderr)


def print_warning(text: str) -> None:
    print(f"declic: warning: {text}", file=sys.stderr)


def kafka_at(args: argparse.Namespace) -> str:
    """Return "Kafka at <bootstrap>", with the SASL user when there is one."""
    bootstrap = _setting(args, "kafka_bootstrap") or DEFAULT_BOOTSTRAP
    user = _setting(args, "kafka_sasl_username")
    return f"Kafka at {bootstrap}" + (f" (user {user!r})" if user else "")


def _setting(args: argparse.Namespace, name: str) -> str | None:
    value = getattr(args, f"setting_{name}", None)
    return str(value) if value is not None else os.environ.get(f"DECLIC_{name.upper()}")


def unreachable_reason(bootstrap: str, timeout: float = 3.0) -> str | None:
    """Return why no bootstrap server accepts a TCP connection, or None if one does."""
    reasons: list[str] = []
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                return None
        except ConnectionRefusedError:
            reason = "connection refused"
        except socket.gaierror:
            reason = f"unknown host {host}"
        except TimeoutError:
            reason = f"no answer in {timeout:g} s"
        except (OSError, ValueError) as error:
            reason = getattr(error, "strerror", None) or str(error)
        if reason not in reasons:
            reasons.append(reason)
    return "; ".join(reasons)


def unreachable_message(args: argparse.Namespace) -> str:
    """Return the one line saying Kafka could not be reached, and why."""
    bootstrap = _setting(args, "kafka_bootstrap") or DEFAULT_BOOTSTRAP
    reason = unreachable_reason(bootstrap)
    if reason is None:
        return (
            f"{kafka_at(args)} accepts connections but did not answer as Kafka "
            "(check DECLIC_KAFKA_SECURITY_PROTOCOL and the listener's port)"
        )
    return f"{kafka_at(args)} is unreachable ({reason})"


def report(error: BaseException, args: argparse.Namespace, names: dict[str, str]) -> int:
    """Print what `error` means for the user; return the exit status."""
    from aiokafka.errors import KafkaConnectionError, KafkaError

    from engine.retry import access_error

    if isinstance(error, KafkaAccessError):
        print_error(f"{kafka_at(args)}: {error}")
        return EXIT_KAFKA
    if isinstance(error, ConfigError):
        print_error(error.render(names))
        return EXIT_INVALID
    if isinstance(error, DeclicError):
        print_error(str(error))
        return EXIT_INVALID
    if isinstance(error, OSError) and error.filename is not None:
        print_error(f"{error.filename}: {error.strerror or error}")
        return EXIT_INVALID
    if isinstance(error, KafkaError | ConnectionError | TimeoutError):
        refused = access_error(error, since=getattr(args, "started_at", None))
        if refused is not None:
            print_error(f"{kafka_at(args)}: {refused}")
        elif isinstance(error, KafkaConnectionError | ConnectionError | TimeoutError):
            print_error(unreachable_message(args))
        else:
            print_error(f"{kafka_at(args)}: {type(error).__name__}: {error}")
        return EXIT_KAFKA
    traceback.print_exception(error, file=sys.stderr)
    print_error(
        f"internal error ({type(error).__name__}) in declic {__version__}: this is a bug; "
        "please report it, with the lines above, on the project's issue tracker"
    )
    return EXIT_BUG
