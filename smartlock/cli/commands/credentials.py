"""`smartlock credentials issue|revoke|list`: identities of locks, gates, people and services.

Credentials live in an owner-only store (setting ``credentials.dir``, default
``<run_dir>/credentials``). ``issue`` creates an identity with a fresh secret (an MQTT password,
or an API token for declarants and customs) and, for locks and gates, an HMAC key (CONTRACT
section 6); ``--rotate`` replaces them. Secrets are printed only with ``--print-secret``, to
provision a device. When the local Mosquitto of the run directory is running, the change is
applied to it at once: a revoked identity is disconnected and refused from then on.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from smartlock.adapters.broker_auth import push_identity
from smartlock.adapters.credentials import ROLES, CredentialStore, Identity
from smartlock.errors import InfrastructureError
from smartlock.runtime import settings_from_args
from smartlock.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="TOML settings file")
    parser.add_argument(
        "--run-dir", type=Path, default=None, help="the local stack's run directory (default: .run)"
    )
    parser.add_argument("--mqtt-host", default=None, help="broker to apply the change to")
    parser.add_argument("--mqtt-port", type=int, default=None)
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="credentials directory (default: setting credentials.dir, else .run/credentials)",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    issue = actions.add_parser(
        "issue", help="issue (or with --rotate replace) an identity's credentials"
    )
    issue.add_argument("role", choices=ROLES)
    issue.add_argument(
        "name",
        nargs="?",
        default=None,
        help="lock id, gate id, operator id, ...; service accounts default to the role",
    )
    issue.add_argument(
        "--rotate", action="store_true", help="replace the secret and key of an existing identity"
    )
    issue.add_argument(
        "--print-secret",
        action="store_true",
        help="print the new secret (and key) as JSON on stdout, to provision the device",
    )
    revoke = actions.add_parser("revoke", help="remove an identity; it can no longer connect")
    revoke.add_argument("name")
    listing = actions.add_parser("list", help="list identities (names and roles, never secrets)")
    listing.add_argument("--role", choices=ROLES, default=None)
    files = actions.add_parser(
        "broker-files",
        help="write a broker's identity file and TLS certificate (compose.yaml's one-shot step)",
    )
    files.add_argument("out", type=Path, help="directory: dynamic-security.json, ca.crt, server.*")
    files.add_argument("--host", default="localhost", help="the broker's host name (certificate)")
    files.add_argument(
        "--redis-acl",
        type=Path,
        default=None,
        help="also write Redis's ACL file here (one user per service account, hashes only)",
    )
    files.add_argument(
        "--kafka-users",
        type=Path,
        default=None,
        help="also write one kafka-configs.sh --add-config-file per Kafka service account here "
        "(SASL/SCRAM users; owner-only, they hold the passwords)",
    )


def store_for(settings: Settings, directory: Path | None = None) -> CredentialStore:
    """The credentials store of ``settings`` (or of ``directory``)."""
    return CredentialStore(directory or settings.credentials_dir)


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {"run_dir": args.run_dir} if args.run_dir else {}
    settings = settings_from_args(args, **overrides)
    if args.mqtt_host or args.mqtt_port:
        mqtt = {
            "host": args.mqtt_host or settings.mqtt.host,
            "port": args.mqtt_port or settings.mqtt.port,
        }
        settings = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update=mqtt)})
    store = store_for(settings, args.dir)
    if args.action == "issue":
        identity = store.issue(args.role, args.name, rotate=args.rotate)
        _apply(settings, store, identity, revoked=False)
        verb = "rotated" if args.rotate else "issued"
        print(f"{verb} {identity.role} {identity.name}: {_what(identity)} stored in {store.path}")
        if args.print_secret:
            secret = {
                "name": identity.name,
                "role": identity.role,
                "secret": identity.secret.get_secret_value(),
            }
            if identity.key is not None:
                secret["key"] = identity.key.get_secret_value()
            print(json.dumps(secret))
        return 0
    if args.action == "revoke":
        identity = store.revoke(args.name)
        _apply(settings, store, identity, revoked=True)
        print(f"revoked {identity.role} {identity.name}")
        return 0
    if args.action == "broker-files":
        print(broker_files(store, args.out, args.host))
        if args.redis_acl is not None:
            print(redis_acl_file(store, args.redis_acl, settings.redis.prefix))
        if args.kafka_users is not None:
            print(kafka_user_files(store, args.kafka_users))
        return 0
    roles = (args.role,) if args.role else ROLES
    for identity in store.by_role(*roles):
        print(f"{identity.name:<24} {identity.role:<10} issued {identity.issued_at}")
    return 0


def _what(identity: Identity) -> str:
    if identity.role in ("declarant", "customs"):
        return "intake API token"
    if identity.role == "stream":
        return "key of the inbound Kafka records"
    return "MQTT password" + (" and HMAC key" if identity.key is not None else "")


def _apply(
    settings: Settings, store: CredentialStore, identity: Identity, *, revoked: bool
) -> None:
    """Applies the change at once to the broker the settings name, if it answers."""
    if identity.role == "stream":  # no login: the bridges and workers re-read the store
        print(
            "the bridges and workers use the new stream key from their next batch; the "
            "previous one is accepted for 24 h"
            if not revoked
            else "without a stream key no bridge can forward and no worker accepts a record"
        )
        return
    host, port = settings.mqtt.host, settings.mqtt.port
    admin = store.find("admin")
    if admin is None:
        print("no broker admin in this store: the broker learns the change when it starts")
        return
    _apply_redis(settings, admin, identity, revoked=revoked)
    try:
        push_identity(host, port, admin, identity, revoked=revoked)
    except InfrastructureError as exc:
        print(
            f"not applied to a broker at {host}:{port} ({exc}); it reads the store when it starts"
        )
        return
    done = "removed and disconnected" if revoked else "admitted"
    print(f"Mosquitto on {host}:{port}: {identity.name} {done}")


def _apply_redis(settings: Settings, admin: Identity, identity: Identity, *, revoked: bool) -> None:
    """A Redis service account's new password (or its removal) applied to the running Redis."""
    import redis

    from smartlock.adapters.redis_auth import REDIS_ACCOUNTS, apply_identity

    if identity.role not in REDIS_ACCOUNTS:
        return
    if identity.role == "admin":
        print("Redis learns the new admin password when it restarts (smartlock stack down/up)")
        return
    try:
        print(apply_identity(settings.redis.url, admin, identity, revoked=revoked))
    except redis.RedisError as exc:
        print(
            f"not applied to Redis at {settings.redis.url} ({exc}); it reads the store when it starts"
        )


def broker_files(store: CredentialStore, out: Path, host: str) -> str:
    """Issues the service accounts if missing and writes, owner-only, the dynamic-security
    file of every MQTT identity and a TLS certificate for ``host`` from a local CA."""
    import json as json_

    from smartlock.adapters.broker_auth import dynsec_config
    from smartlock.adapters.credentials import SERVICE_ROLES
    from smartlock.local.stack import make_tls

    for role in SERVICE_ROLES:
        store.ensure(role)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = out / "dynamic-security.json"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json_.dump(dynsec_config(store.identities().values()), handle, indent=1)
    make_tls(out, host)
    return f"wrote {target} and the TLS files for {host} (give {out / 'ca.crt'} to the devices)"


def redis_acl_file(store: CredentialStore, target: Path, prefix: str) -> str:
    """Writes Redis's ACL file for the service accounts of ``store`` (issued if missing).

    Mode 0644: the Redis image reads it as its own user, and it holds only SHA-256 hashes of
    random 32-character secrets, never a password.
    """
    from smartlock.adapters.redis_auth import acl_file, ensure_accounts

    ensure_accounts(store)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(acl_file(store.identities().values(), prefix))
    target.chmod(0o644)
    return f"wrote {target} (Redis users of the service accounts, key prefix {prefix!r})"


def kafka_user_files(store: CredentialStore, out: Path, mechanism: str = "SCRAM-SHA-512") -> str:
    """Writes ``<account>.properties`` for each Kafka service account (issued if missing): the
    SCRAM credential in the form ``kafka-configs.sh --add-config-file`` reads, so the password
    never appears on a command line. Owner-only: compose.yaml's ``kafka-users`` step reads them
    as root and creates the users through the broker's in-container listener."""
    from smartlock.adapters.kafka_auth import KAFKA_ACCOUNTS

    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    for account in KAFKA_ACCOUNTS:
        secret = store.ensure(account).secret.get_secret_value()
        target = out / f"{account}.properties"
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{mechanism}=iterations=8192,password={secret}\n")
    return f"wrote the Kafka users of {', '.join(KAFKA_ACCOUNTS)} ({mechanism}) in {out}"
