"""Redis with a named user per service account: the one way the project opens a Redis client.

Redis runs with its ``default`` user disabled (no anonymous client: ``NOAUTH``) and one ACL
user per service account of the credentials store, whose password is that account's secret
(never in a URL, on a command line or in a log; the ACL file holds only SHA-256 hashes):

=========  ==================================================================================
user       may
=========  ==================================================================================
worker     read and write the live state (trips, streams, write-offs, audit, its heartbeat)
bridge     write its own heartbeat and name (``alive:bridge:*``, ``members``)
intake     read and write the intake's declarations (with the write-off notices); read trips
console    read everything; write only its own keys (``console:*``)
reader     read only (``smartlock resolve``, ``stack status``, the demo's displays)
gates      append the gate clients' events (``gate:events``); read the verdict stream
admin      anything (the tests, ``ACL LOAD`` after a rotation)
=========  ==================================================================================

Key patterns come from :meth:`smartlock.adapters.keys.RedisKeys.access`; commands are the
read/write categories without ``@dangerous`` (no ``KEYS``, ``FLUSHALL``, ``CONFIG``, ``ACL``
...), except for ``admin``. Build clients with :func:`redis_client` or
:func:`async_redis_client` (settings + account name).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from smartlock.adapters.credentials import CredentialStore, Identity
from smartlock.adapters.keys import RedisKeys
from smartlock.errors import ConfigError

if TYPE_CHECKING:
    import redis
    import redis.asyncio as aioredis

    from smartlock.settings import Settings

#: Service accounts that have a Redis user (their name is the user name).
REDIS_ACCOUNTS = ("worker", "bridge", "intake", "console", "reader", "gates", "admin")

_READ_WRITE = "+@read +@write +@connection +@transaction +@scripting -@dangerous"
_READ_ONLY = "+@read +@connection -@dangerous"


def check_url(url: str) -> str:
    """``url`` if it names no user or password (those come from the credentials store).

    Raises:
        ConfigError: the URL carries credentials.
    """
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            "redis.url must not carry a user or password (it would show up in logs and process "
            "listings); the password comes from the credentials store: give only "
            "redis://HOST:PORT/DB"
        )
    return url


def acl_rules(identity: Identity, prefix: str) -> str | None:
    """The ACL line of ``identity``'s Redis user, or None if its role has no Redis user.

    Args:
        identity: a service account of the credentials store.
        prefix: the key prefix (``redis.prefix``); a glob such as ``*`` admits every prefix
            (the test servers, where every test has its own).
    """
    if identity.role not in REDIS_ACCOUNTS or identity.name != identity.role:
        return None
    digest = hashlib.sha256(identity.secret.get_secret_value().encode()).hexdigest()
    head = f"user {identity.name} reset on #{digest}"
    if identity.role == "admin":
        return f"{head} ~* &* +@all"
    read_write, read_only = RedisKeys(prefix).access(identity.role)
    patterns = [f"~{p}" for p in read_write] + [f"%R~{p}" for p in read_only]
    commands = _READ_WRITE if read_write else _READ_ONLY
    return " ".join([head, "resetchannels", *patterns, "-@all", commands])


def acl_file(identities: Iterable[Identity], prefix: str) -> str:
    """The Redis ACL file: ``default`` off, one user per service account (hashed passwords)."""
    lines = ["user default off resetkeys resetchannels -@all"]
    for identity in sorted(identities, key=lambda i: i.name):
        rule = acl_rules(identity, prefix)
        if rule is not None:
            lines.append(rule)
    return "\n".join(lines) + "\n"


def ensure_accounts(store: CredentialStore) -> None:
    """Issues the Redis service accounts missing from ``store``."""
    for account in REDIS_ACCOUNTS:
        store.ensure(account)


def _identity(settings: Settings, account: str) -> Identity:
    if account not in REDIS_ACCOUNTS:
        raise ConfigError(f"{account!r} has no Redis user; use one of {', '.join(REDIS_ACCOUNTS)}")
    return CredentialStore(settings.credentials_dir).get(account)


def connect(url: str, identity: Identity, *, asynchronous: bool = False, **kwargs: Any) -> Any:
    """A client of ``url`` logged in as ``identity``: ``redis.Redis``, or with ``asynchronous``
    a ``redis.asyncio.Redis`` (``decode_responses`` defaults to True)."""
    import redis
    import redis.asyncio as aioredis

    kwargs.setdefault("decode_responses", True)
    factory = aioredis.Redis if asynchronous else redis.Redis
    return factory.from_url(
        check_url(url),
        username=identity.name,
        password=identity.secret.get_secret_value(),
        **kwargs,
    )


def redis_client(settings: Settings, account: str, **kwargs: Any) -> redis.Redis:
    """A synchronous Redis client of ``settings.redis.url`` logged in as service ``account``.

    Args:
        settings: the Redis URL (without credentials) and the credentials directory.
        account: one of :data:`REDIS_ACCOUNTS`.
        **kwargs: passed to ``redis.Redis`` (``decode_responses`` defaults to True).

    Raises:
        ConfigError: the URL carries credentials or the account has no Redis user.
        CredentialError: the account is missing from the store (the message says how to issue it).
    """
    client: redis.Redis = connect(settings.redis.url, _identity(settings, account), **kwargs)
    return client


def async_redis_client(settings: Settings, account: str, **kwargs: Any) -> aioredis.Redis:
    """The asyncio twin of :func:`redis_client`."""
    client: aioredis.Redis = connect(
        settings.redis.url, _identity(settings, account), asynchronous=True, **kwargs
    )
    return client


def apply_identity(url: str, admin: Identity, identity: Identity, *, revoked: bool = False) -> str:
    """Applies an issued, rotated or revoked service account to a running Redis, as ``admin``.

    A new password replaces the old one (``ACL SETUSER ... resetpass #hash``; connections
    already logged in keep working, new ones need the new password); a revoked account is
    deleted, which disconnects its clients. ``ACL SAVE`` writes the change to the ACL file.
    Returns a line for the user.

    Raises:
        redis.RedisError: Redis does not answer or refuses (e.g. ``admin`` itself was rotated:
            restart Redis, which reads the store's accounts when it starts).
    """
    client = connect(url, admin, socket_timeout=3, socket_connect_timeout=3)
    try:
        if revoked:
            client.execute_command("ACL", "DELUSER", identity.name)
            done = "removed and disconnected"
        else:
            digest = hashlib.sha256(identity.secret.get_secret_value().encode()).hexdigest()
            client.execute_command("ACL", "SETUSER", identity.name, "resetpass", f"#{digest}")
            done = "has its new password"
        client.execute_command("ACL", "SAVE")
    finally:
        client.close()
    return f"Redis: {identity.name} {done}"
