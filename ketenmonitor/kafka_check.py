"""Fail fast, with one line, when Kafka cannot be used: before a command starts its clients.

    require_kafka(settings)     # raises ServiceUnreachableError or AuthenticationFailedError

Kafka clients retry an unreachable bootstrap address, and a refused SASL login, until a timeout
of about half a minute and then report both as "unable to bootstrap". This check opens one
connection to each bootstrap address (with the SASL handshake when the settings ask for it) and
tells the two apart within seconds: nothing listening, or the broker refused the credentials.
It says nothing about ACLs; a principal without rights is reported by the command itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ketenmonitor.cli_common import AuthenticationFailedError, ServiceUnreachableError
from ketenmonitor.settings import Settings

CHECK_TIMEOUT_SECONDS = 8.0


def bootstrap_addresses(bootstrap: str) -> list[tuple[str, int]]:
    """`host:port,host:port` -> [(host, port), ...]; a missing port means 9092."""
    addresses = []
    for item in bootstrap.split(","):
        item = item.strip()
        if not item:
            continue
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "9092")
        try:
            addresses.append((host.strip("[]") or "localhost", int(port)))
        except ValueError:
            raise ServiceUnreachableError(
                f"KETENMONITOR_KAFKA_BOOTSTRAP has no valid host:port in {item!r} "
                "(e.g. 127.0.0.1:9092)"
            ) from None
    if not addresses:
        raise ServiceUnreachableError("KETENMONITOR_KAFKA_BOOTSTRAP is empty (e.g. 127.0.0.1:9092)")
    return addresses


def require_kafka(settings: Settings, timeout: float = CHECK_TIMEOUT_SECONDS) -> None:
    """Return if at least one bootstrap address answers and accepts the credentials."""
    asyncio.run(_check(settings, timeout))


async def _check(settings: Settings, timeout: float) -> None:
    from aiokafka.errors import SaslAuthenticationFailed

    bootstrap = settings.kafka_bootstrap
    problems = []
    for host, port in bootstrap_addresses(bootstrap):
        try:
            await asyncio.wait_for(_connect(host, port, settings), timeout)
            return
        except SaslAuthenticationFailed:
            raise AuthenticationFailedError(
                f"Kafka at {bootstrap} refused the login of user {settings.kafka_username!r} "
                f"({settings.kafka_sasl_mechanism}): check KETENMONITOR_KAFKA_USERNAME and "
                "KETENMONITOR_KAFKA_PASSWORD(_FILE)"
            ) from None
        except TimeoutError:
            problems.append(f"{host}:{port} did not answer within {timeout:.0f} s")
        except OSError as exc:
            problems.append(f"{host}:{port}: {exc.strerror or exc}")
        except Exception as exc:  # a handshake that failed otherwise (not Kafka, TLS, ...)
            problems.append(f"{host}:{port}: {type(exc).__name__}")
    raise ServiceUnreachableError(
        f"cannot reach Kafka at {bootstrap} ({'; '.join(problems)}): start the broker, or point "
        "--bootstrap / KETENMONITOR_KAFKA_BOOTSTRAP at a running one"
    )


async def _connect(host: str, port: int, settings: Settings) -> None:
    from aiokafka.conn import create_conn

    options: dict[str, Any] = {}
    if settings.kafka_sasl:
        options = {
            "security_protocol": settings.kafka_security_protocol,
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_username,
            "sasl_plain_password": settings.kafka_password_value(),
            "ssl_context": settings.kafka_ssl_context(),
        }
    connection = await create_conn(host, port, request_timeout_ms=5000, **options)
    connection.close()
