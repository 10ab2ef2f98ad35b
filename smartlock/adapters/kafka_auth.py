"""How the project's Kafka clients log in: SASL/SCRAM as their service account, or not at all.

``kafka.sasl_mechanism`` (``SCRAM-SHA-512`` or ``SCRAM-SHA-256``) turns it on: every client
(the bridge's producer and admin client, the worker's Faust app and producer, the console's lag
probe) then logs in as its service account, with that account's secret from the credentials
store; the password is never in a setting, a URL, an environment variable or a log line
(``SASL_PLAINTEXT``: inside a private network, as compose.yaml runs it; use TLS across hosts).
Unset (the default), clients connect without authentication: the local Tansu 0.6 cannot
authenticate anyone (README "Security model", Kafka authentication) and listens on 127.0.0.1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smartlock.adapters.credentials import CredentialStore

if TYPE_CHECKING:
    from smartlock.settings import Settings

#: Service accounts with a Kafka user (compose.yaml creates exactly these).
KAFKA_ACCOUNTS = ("bridge", "worker", "console")


def kafka_login(settings: Settings, account: str) -> dict[str, Any]:
    """Keyword arguments for an aiokafka client of ``account`` (empty without SASL).

    Raises:
        CredentialError: SASL is on and the account is missing from the store.
    """
    mechanism = settings.kafka.sasl_mechanism
    if mechanism is None:
        return {}
    identity = CredentialStore(settings.credentials_dir).get(account)
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": identity.name,
        "sasl_plain_password": identity.secret.get_secret_value(),
    }


def faust_credentials(settings: Settings, account: str) -> Any:
    """``faust.SASLCredentials`` of ``account`` for ``faust.App(broker_credentials=...)``, or
    None without SASL."""
    login = kafka_login(settings, account)
    if not login:
        return None
    import faust

    return faust.SASLCredentials(
        username=login["sasl_plain_username"],
        password=login["sasl_plain_password"],
        mechanism=login["sasl_mechanism"],
    )
