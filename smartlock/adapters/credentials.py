"""Credentials of every identity that talks to the pipeline, in one owner-only store.

An identity is a name and a role (CONTRACT section 6): a ``lock`` or ``gate`` (MQTT password
and the HMAC key of section 6), an ``operator`` or ``observer`` (MQTT password, also used to
sign in to the console), a ``declarant`` or ``customs`` officer (an API token for the intake),
or one of the pipeline's service accounts (``bridge``, ``worker``, ``intake``, ...). The
``stream`` entry is no login: its key authenticates the records the bridge writes to the
inbound Kafka topic (:mod:`smartlock.stream.inbound`); the bridge and the worker share it.
Rotating it keeps the previous key in ``previous_key`` until ``previous_until``
(:data:`STREAM_KEY_GRACE_S` later), so records written just before a rotation still verify.

The store is a directory (mode 0700) holding ``credentials.json`` (mode 0600)::

    {"version": 1, "identities": {"LK-01": {"role": "lock", "secret": "...", "key": "...",
                                            "issued_at": "2026-11-24T03:00:00Z"}, ...}}

Secrets are :class:`pydantic.SecretStr` in memory, so a ``repr`` or a log line shows
``**********``; they are written only to this file and printed once by ``smartlock credentials
issue`` (to hand them to the device). Writes take an exclusive ``flock`` and replace the file
atomically, so concurrent ``issue`` commands cannot lose each other's identities. Readers load
the file again when its modification time changes: a revocation takes effect without a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from smartlock.errors import ConfigError, SmartlockError

FILE_NAME = "credentials.json"
LOCK_NAME = ".lock"

#: Device and person roles: one MQTT connection each, client id = the identity's name.
DEVICE_ROLES = ("lock", "gate", "operator", "observer", "officer")
#: Intake (HTTP) roles: an API token, no MQTT.
HTTP_ROLES = ("declarant", "customs")
#: Service accounts of the pipeline and its tools; the name is the role.
SERVICE_ROLES = (
    "bridge",
    "worker",
    "intake",
    "console",
    "simulator",
    "replay",
    "recorder",
    "reader",
    "gates",
    "admin",
    "stream",
)
ROLES = DEVICE_ROLES + HTTP_ROLES + SERVICE_ROLES
#: Roles whose identities carry an HMAC key (CONTRACT section 6, signed verdicts, and the
#: inbound Kafka records' key of the ``stream`` entry).
KEYED_ROLES = ("lock", "gate", "stream")
#: How long the previous stream key is still accepted after a rotation (bridges and workers
#: re-read the store when it changes; a record written before the rotation may wait in Kafka).
STREAM_KEY_GRACE_S = 24 * 3600

#: MQTT connections a device or person may hold at once (its "sessions"): a lock is one
#: device; a gate, an operator, an observer or an officer may run several processes (the
#: gate client and its reconciliation, the console and ``smartlock resolve``...).
SESSIONS = {"lock": 1}
DEFAULT_SESSIONS = 4
#: Separates an identity's name from its session number in the MQTT user name and client id
#: of its 2nd, 3rd... session (``wang-li~2``); never part of a name, so no identity can be
#: bound to another's session.
SESSION_MARK = "~"

#: Identity names: safe as one MQTT topic level and as a client id; no ``:``, which service
#: client ids use (``bridge:...``), so a device can never be bound to a service's client id.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class CredentialError(SmartlockError):
    """An identity cannot be issued, found or used as asked.

    Attributes:
        name: the identity concerned, if any.
    """

    def __init__(self, message: str, name: str | None = None) -> None:
        self.name = name
        super().__init__(message)


@dataclass(frozen=True)
class Identity:
    """One identity of the store. ``secret`` is its MQTT password or API token."""

    name: str
    role: str
    secret: SecretStr
    key: SecretStr | None
    issued_at: str
    previous_key: SecretStr | None = None  # the stream key before a rotation
    previous_until: float = 0.0  # epoch seconds: until when ``previous_key`` is accepted

    @property
    def bound(self) -> bool:
        """True if its MQTT client id must be its name (devices and people, not services)."""
        return self.role in DEVICE_ROLES

    @property
    def sessions(self) -> list[str]:
        """The MQTT user names (each also the only client id it may use) of a bound identity:
        its name, then ``<name>~2``, ``<name>~3``... one per connection it may hold at once."""
        if not self.bound:
            return [self.name]
        count = SESSIONS.get(self.role, DEFAULT_SESSIONS)
        return [self.name] + [f"{self.name}{SESSION_MARK}{k}" for k in range(2, count + 1)]

    def to_record(self) -> dict[str, Any]:
        record = {
            "role": self.role,
            "secret": self.secret.get_secret_value(),
            "issued_at": self.issued_at,
        }
        if self.key is not None:
            record["key"] = self.key.get_secret_value()
        if self.previous_key is not None:
            record["previous_key"] = self.previous_key.get_secret_value()
            record["previous_until"] = self.previous_until
        return record

    @classmethod
    def from_record(cls, name: str, record: dict[str, Any]) -> Identity:
        key, previous = record.get("key"), record.get("previous_key")
        return cls(
            name,
            str(record["role"]),
            SecretStr(str(record["secret"])),
            SecretStr(str(key)) if key else None,
            str(record.get("issued_at", "")),
            SecretStr(str(previous)) if previous else None,
            float(record.get("previous_until", 0.0)),
        )


def _new_secret(role: str) -> str:
    if role in HTTP_ROLES:
        return "slt_" + secrets.token_urlsafe(32)  # an API token, recognisable in a leak scan
    return secrets.token_urlsafe(24)


def check_name(role: str, name: str) -> None:
    """Raises CredentialError unless ``role`` is known and ``name`` is a valid name for it."""
    if role not in ROLES:
        raise CredentialError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}", name)
    if not NAME_PATTERN.match(name):
        raise CredentialError(
            f"identity name {name!r} is not valid: 1-64 letters, digits, '.', '_' or '-', starting "
            "with a letter or digit",
            name,
        )
    if role in SERVICE_ROLES and name != role:
        raise CredentialError(f"the {role} service account is called {role!r}, not {name!r}", name)
    if role not in SERVICE_ROLES and name in SERVICE_ROLES:
        raise CredentialError(f"{name!r} is reserved for the {name} service account", name)


class CredentialStore:
    """The credentials directory.

    Args:
        directory: where ``credentials.json`` lives (created with mode 0700 on first write).
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        self._cache: tuple[float, dict[str, Identity]] | None = None

    def __repr__(self) -> str:
        return f"CredentialStore({str(self.directory)!r})"

    # ------------------------------------------------------------------ reading

    def exists(self) -> bool:
        return self.path.is_file()

    def identities(self) -> dict[str, Identity]:
        """Every identity by name (reloaded when the file changed); empty if there is no store."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        if self._cache is not None and self._cache[0] == mtime:
            return self._cache[1]
        identities = self._read()
        self._cache = (mtime, identities)
        return identities

    def _read(self) -> dict[str, Identity]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return {
                name: Identity.from_record(name, rec) for name, rec in raw["identities"].items()
            }
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"credentials store {self.path} is unreadable ({type(exc).__name__}); "
                "restore it or issue the credentials again"
            ) from None

    def get(self, name: str) -> Identity:
        """The identity called ``name``.

        Raises:
            CredentialError: there is none; the message says how to issue it.
        """
        identity = self.identities().get(name)
        if identity is None:
            raise CredentialError(
                f"There are no credentials for {name} in {self.directory}; issue them with "
                f"`smartlock credentials issue ROLE {name}` (ROLE: the identity's role, e.g. gate, "
                "operator or officer).",
                name,
            )
        return identity

    def find(self, name: str) -> Identity | None:
        return self.identities().get(name)

    def by_role(self, *roles: str) -> list[Identity]:
        return sorted(
            (i for i in self.identities().values() if i.role in roles), key=lambda i: i.name
        )

    def keys(self, role: str) -> dict[str, SecretStr]:
        """HMAC keys of every identity of ``role`` (``lock`` or ``gate``), by name."""
        return {i.name: i.key for i in self.by_role(role) if i.key is not None}

    def stream_keys(self, now: float | None = None) -> list[bytes]:
        """The keys that authenticate inbound Kafka records: the current one (the bridge signs
        with it) first, then the previous one while its grace period lasts.

        Raises:
            CredentialError: the store has no stream key; the message says how to issue it.
        """
        identity = self.find("stream")
        if identity is None or identity.role != "stream" or identity.key is None:
            raise CredentialError(
                f"no stream key in {self.directory}: the bridge and the worker need it to "
                "authenticate the inbound Kafka records; issue it with "
                "`smartlock credentials issue stream` (`smartlock stack up` does)",
                "stream",
            )
        keys = [bytes.fromhex(identity.key.get_secret_value())]
        now = time.time() if now is None else now
        if identity.previous_key is not None and now < identity.previous_until:
            keys.append(bytes.fromhex(identity.previous_key.get_secret_value()))
        return keys

    def verify_password(
        self, name: str, password: str, roles: tuple[str, ...] = ("operator", "observer")
    ) -> Identity | None:
        """The identity if ``password`` is its secret and its role is one of ``roles``, else None.

        Constant-time comparison; an unknown name costs the same as a wrong password.
        """
        identity = self.identities().get(name)
        expected = (
            identity.secret.get_secret_value()
            if identity is not None
            else secrets.token_urlsafe(24)
        )
        ok = hmac.compare_digest(expected.encode(), password.encode())
        if identity is None or not ok or identity.role not in roles:
            return None
        return identity

    def identify_token(self, token: str, roles: tuple[str, ...] = HTTP_ROLES) -> Identity | None:
        """The intake identity whose API token is ``token``, or None."""
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for identity in self.by_role(*roles):
            if hmac.compare_digest(
                hashlib.sha256(identity.secret.get_secret_value().encode()).digest(), digest
            ):
                found = identity
        return found

    # ------------------------------------------------------------------ writing

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Identity]]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        with open(self.directory / LOCK_NAME, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            identities = dict(self._read())
            yield identities
            self._write(identities)

    def _write(self, identities: dict[str, Identity]) -> None:
        body = {
            "version": 1,
            "identities": {n: i.to_record() for n, i in sorted(identities.items())},
        }
        fd, tmp = tempfile.mkstemp(prefix=".credentials-", dir=self.directory)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(body, out, indent=1)
                out.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._cache = None

    def issue(self, role: str, name: str | None = None, *, rotate: bool = False) -> Identity:
        """Creates an identity (or, with ``rotate``, gives an existing one new secrets).

        Args:
            role: one of :data:`ROLES`.
            name: the identity's name (lock id, gate id, operator id...); service accounts are
                named after their role and may omit it.
            rotate: replace the secret and key of an existing identity of the same role.

        Raises:
            CredentialError: bad role or name, or the name exists (without ``rotate``).
        """
        name = role if name is None else name
        check_name(role, name)
        with self._locked() as identities:
            existing = identities.get(name)
            if existing is not None and not rotate:
                raise CredentialError(
                    f"{name} already has credentials (as {existing.role}); add --rotate to "
                    "replace them with new ones.",
                    name,
                )
            if existing is not None and existing.role != role:
                article = "an" if existing.role[:1] in "aeiou" else "a"
                wanted = "an" if role[:1] in "aeiou" else "a"
                raise CredentialError(
                    f"{name!r} is {article} {existing.role}, not {wanted} {role}", name
                )
            key = SecretStr(secrets.token_hex(32)) if role in KEYED_ROLES else None
            previous, until = None, 0.0
            if existing is not None and role == "stream":  # records in flight still verify
                previous, until = existing.key, time.time() + STREAM_KEY_GRACE_S
            identity = Identity(
                name,
                role,
                SecretStr(_new_secret(role)),
                key,
                datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                previous,
                until,
            )
            identities[name] = identity
        return identity

    def ensure(self, role: str, name: str | None = None) -> Identity:
        """The identity, issued first if it does not exist yet."""
        found = self.find(name or role)
        if found is not None and found.role == role:
            return found
        try:
            return self.issue(role, name)
        except CredentialError:
            found = self.find(name or role)  # issued meanwhile by another process
            if found is not None and found.role == role:
                return found
            raise

    def revoke(self, name: str) -> Identity:
        """Removes an identity; returns what it was.

        Raises:
            CredentialError: no such identity.
        """
        with self._locked() as identities:
            identity = identities.pop(name, None)
            if identity is None:
                raise CredentialError(f"There are no credentials for {name} to revoke.", name)
        return identity
