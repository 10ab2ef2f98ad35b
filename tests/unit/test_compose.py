"""compose.yaml is a valid Compose file and runs the servers as the local stack does.

The Compose Specification JSON Schema in ``tests/data/compose-spec.json`` is vendored from
the PyPI wheel ``check-jsonschema`` 0.39.0 (``check_jsonschema/builtin_schemas/vendor/
compose-spec.json``, which that project copies from the compose-spec repository; Apache
License 2.0, see ``tests/data/LICENSE.compose-spec``). No network is needed at test time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from smartlock.local.stack import container_mosquitto_config

REPO = Path(__file__).resolve().parents[2]
SERVERS = ("mosquitto", "redis", "kafka")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads((REPO / "tests" / "data" / "compose-spec.json").read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(
        validator_class(schema).iter_errors(compose), key=lambda e: list(e.absolute_path)
    )
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )


def test_the_schema_rejects_a_broken_compose_file(compose: dict[str, Any]) -> None:
    schema = json.loads((REPO / "tests" / "data" / "compose-spec.json").read_text())
    broken = {
        **compose,
        "services": {
            **compose["services"],
            "redis": {**compose["services"]["redis"], "ports": 6379},
        },
    }
    assert not jsonschema.validators.validator_for(schema)(schema).is_valid(broken)


def test_every_server_has_a_health_check_and_the_pipeline_waits_for_it(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert services["mosquitto"]["image"] == "eclipse-mosquitto:2"
    assert services["redis"]["image"] == "redis:7"
    assert services["kafka"]["image"].startswith("apache/kafka:3.8")
    for name in SERVERS:
        assert services[name]["healthcheck"]["test"], name
    for name in ("bridge", "worker"):
        assert services[name]["depends_on"] == {
            "credentials": {"condition": "service_completed_successfully"},
            **{s: {"condition": "service_healthy"} for s in SERVERS},
            "kafka-users": {"condition": "service_completed_successfully"},
        }
        env = services[name]["environment"]
        assert env["SMARTLOCK_MQTT__HOST"] == "mosquitto"
        assert env["SMARTLOCK_KAFKA__BOOTSTRAP"] == "kafka:19092"
        assert env["SMARTLOCK_REDIS__URL"].startswith("redis://redis:")
    # Secure by default: only the MQTT TLS listener is published; credentials live in a volume.
    assert {n: s["ports"] for n, s in services.items() if "ports" in s} == {
        "mosquitto": ["8883:8883"]
    }
    for name in ("bridge", "worker", "intake"):
        assert "credentials:/run/smartlock/credentials:ro" in services[name]["volumes"]
        assert services[name]["environment"]["SMARTLOCK_CREDENTIALS__DIR"] == (
            "/run/smartlock/credentials"
        )
    assert services["bridge"]["command"] == ["smartlock", "bridge"]
    assert services["worker"]["command"] == ["smartlock", "worker"]
    assert services["demo-fleet"]["profiles"] == ["demo"]
    assert services["demo-fleet"]["command"][:4] == ["smartlock", "simulate", "--preset", "demo"]


def test_mosquitto_in_docker_uses_the_same_config_as_the_local_stack(
    compose: dict[str, Any],
) -> None:
    mount = "./deploy/mosquitto.conf:/mosquitto/config/mosquitto.conf:ro"
    assert mount in compose["services"]["mosquitto"]["volumes"]
    text = (REPO / "deploy" / "mosquitto.conf").read_text()
    assert text == container_mosquitto_config(), (
        "deploy/mosquitto.conf drifted from smartlock.local.stack.mosquitto_config; regenerate it with "
        'python -c "from smartlock.local.stack import container_mosquitto_config as c; '
        "print(c(), end='')\" > deploy/mosquitto.conf"
    )
    assert "max_queued_messages 0" in text and "persistence true" in text
    assert "allow_anonymous false" in text and "listener 8883" in text


def test_dockerfile_installs_the_package_on_python_311_slim() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert [line for line in text.splitlines() if line.startswith("FROM")] == [
        "FROM python:3.11-slim"
    ]
    assert "pip install ." in text
    assert 'CMD ["smartlock", "worker"]' in text


def test_every_server_requires_its_clients_to_log_in(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = services["worker"]["environment"]
    assert env["SMARTLOCK_KAFKA__SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert not any("PASSWORD" in k or "SECRET" in k for k in env)  # secrets come from the store
    # Redis: the ACL file of the credentials service, anonymous clients refused.
    redis_cmd = services["redis"]["command"]
    assert redis_cmd[redis_cmd.index("--aclfile") + 1] == "/redis/auth/users.acl"
    assert "NOAUTH" in " ".join(services["redis"]["healthcheck"]["test"])
    # Kafka: other containers reach only the SASL/SCRAM listener; the others are loopback.
    kafka = services["kafka"]["environment"]
    protocols = dict(p.split(":") for p in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    for listener in kafka["KAFKA_LISTENERS"].split(","):
        name, address = listener.split("://")
        assert protocols[name] == "SASL_PLAINTEXT" or address.startswith("127.0.0.1:"), listener
    assert kafka["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    # apache/kafka maps '.'->'_', '_'->'__', '-'->'___' (listener.name.clients.scram-sha-512...)
    assert "KAFKA_LISTENER_NAME_CLIENTS_SCRAM___SHA___512_SASL_JAAS_CONFIG" in kafka
    users = services["kafka-users"]
    assert users["network_mode"] == "service:kafka" and "--add-config-file" in users["command"][0]
    assert "$$(basename" in users["command"][0]  # escaped for Compose, a shell $ at run time
    credentials = services["credentials"]["command"]
    assert "--redis-acl" in credentials and "--kafka-users" in credentials
