"""The Redis ACL file made from the credentials store (no server needed)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from smartlock.adapters.credentials import CredentialStore
from smartlock.adapters.redis_auth import REDIS_ACCOUNTS, acl_file, check_url, ensure_accounts
from smartlock.errors import ConfigError


def test_the_acl_file_disables_the_default_user_and_holds_only_hashes(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "credentials")
    ensure_accounts(store)
    store.issue("lock", "LK-01")
    text = acl_file(store.identities().values(), "smartlock")
    lines = text.splitlines()
    assert lines[0].startswith("user default off")
    assert sorted(line.split()[1] for line in lines[1:]) == sorted(REDIS_ACCOUNTS)
    for identity in store.identities().values():
        secret = identity.secret.get_secret_value()
        assert secret not in text
        if identity.name in REDIS_ACCOUNTS:
            assert f"#{hashlib.sha256(secret.encode()).hexdigest()}" in text
    console = next(line for line in lines if line.startswith("user console "))
    assert "~smartlock:console:*" in console and "%R~smartlock:*" in console
    assert "-@dangerous" in console


def test_a_url_with_credentials_is_refused() -> None:
    assert check_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    for url in ("redis://u:p@127.0.0.1:6379/0", "redis://:p@127.0.0.1:6379/0"):
        with pytest.raises(ConfigError, match="credentials store"):
            check_url(url)


def test_settings_refuse_a_redis_url_with_a_password() -> None:
    from smartlock.settings import load_settings

    with pytest.raises(ConfigError, match="must not carry a user or password") as refused:
        load_settings(redis={"url": "redis://worker:s3cret-pw@127.0.0.1:6379/0"})
    assert "s3cret-pw" not in str(refused.value)  # the refusal does not echo the password
