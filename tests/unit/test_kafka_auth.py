"""Kafka clients log in as their service account when SASL is on (no server needed)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import faust

from smartlock.adapters.credentials import CredentialStore
from smartlock.adapters.kafka_auth import KAFKA_ACCOUNTS, faust_credentials, kafka_login
from smartlock.cli.commands.credentials import kafka_user_files, redis_acl_file
from smartlock.settings import load_settings, settings_env
from smartlock.stream.faust_settings import faust_app_kwargs


def test_without_sasl_clients_connect_as_before(tmp_path: Path) -> None:
    settings = load_settings(credentials={"dir": tmp_path})
    assert kafka_login(settings, "worker") == {} and faust_credentials(settings, "worker") is None
    assert "broker_credentials" not in faust_app_kwargs("127.0.0.1:9092", local=True)


def test_with_sasl_each_client_logs_in_as_its_account_and_no_secret_leaks(
    tmp_path: Path,
) -> None:
    store = CredentialStore(tmp_path)
    worker = store.issue("worker")
    settings = load_settings(
        kafka={"sasl_mechanism": "SCRAM-SHA-512"}, credentials={"dir": tmp_path}
    )
    secret = worker.secret.get_secret_value()
    assert kafka_login(settings, "worker") == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "worker",
        "sasl_plain_password": secret,
    }
    credentials = faust_credentials(settings, "worker")
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.mechanism.value == "SCRAM-SHA-512" and secret not in repr(credentials)
    kwargs = faust_app_kwargs("kafka:19092", local=False, credentials=credentials)
    assert kwargs["broker_credentials"] is credentials
    env = settings_env(settings)  # a child process learns the mechanism, never the password
    assert env["SMARTLOCK_KAFKA__SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert not any(secret in value for value in env.values())


def test_the_credentials_service_writes_kafka_users_and_the_redis_acl(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "credentials")
    kafka_user_files(store, tmp_path / "kafka")
    for account in KAFKA_ACCOUNTS:
        path = tmp_path / "kafka" / f"{account}.properties"
        secret = store.get(account).secret.get_secret_value()
        # kafka-configs.sh --add-config-file: "<mechanism>=[iterations=N,]password=P", no brackets
        assert path.read_text() == f"SCRAM-SHA-512=iterations=8192,password={secret}\n"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    acl = tmp_path / "redis" / "users.acl"
    redis_acl_file(store, acl, "smartlock")
    text = acl.read_text()
    assert text.startswith("user default off") and "user worker " in text
    assert not any(i.secret.get_secret_value() in text for i in store.identities().values())
