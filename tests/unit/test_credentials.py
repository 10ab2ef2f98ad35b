"""The credentials store: issue, rotate, revoke, owner-only files, secrets never shown."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from smartlock.adapters.credentials import CredentialError, CredentialStore
from smartlock.cli.main import main


def test_issue_stores_owner_only_with_a_key_for_locks_and_gates(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "creds")
    lock = store.issue("lock", "LK-01")
    gate = store.issue("gate", "beilun-gate")
    operator = store.issue("operator", "wang")
    assert lock.key is not None and gate.key is not None and operator.key is None
    assert lock.bound and operator.bound and not store.issue("bridge").bound
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    saved = json.loads(store.path.read_text())["identities"]
    assert saved["LK-01"]["secret"] == lock.secret.get_secret_value()
    assert lock.secret.get_secret_value() not in repr(lock) and "**" in repr(lock)
    assert CredentialStore(store.directory).get("beilun-gate").key == gate.key


def test_names_roles_and_duplicates_are_checked(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    store.issue("lock", "LK-01")
    with pytest.raises(CredentialError, match="already has credentials"):
        store.issue("lock", "LK-01")
    with pytest.raises(CredentialError, match="is a lock, not a gate"):
        store.issue("gate", "LK-01", rotate=True)
    with pytest.raises(CredentialError, match="is a lock, not an officer"):
        store.issue("officer", "LK-01", rotate=True)
    for bad in ("a/b", "#", "+", "x:y", "", "-x"):
        with pytest.raises(CredentialError, match="not valid"):
            store.issue("lock", bad)
    with pytest.raises(CredentialError, match="reserved for the worker service"):
        store.issue("lock", "worker")
    with pytest.raises(CredentialError, match="unknown role"):
        store.issue("king", "x")
    with pytest.raises(CredentialError, match="issue them with"):
        store.get("LK-02")


def test_rotate_replaces_secrets_and_revoke_removes(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    first = store.issue("gate", "daxie-gate")
    second = store.issue("gate", "daxie-gate", rotate=True)
    assert first.secret != second.secret and first.key != second.key
    reader = CredentialStore(tmp_path)
    assert reader.get("daxie-gate").secret == second.secret
    store.revoke("daxie-gate")
    assert reader.find("daxie-gate") is None  # a reader sees the change without restarting
    with pytest.raises(CredentialError, match="to revoke"):
        store.revoke("daxie-gate")


def test_passwords_and_tokens_are_verified_per_role(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    operator = store.issue("operator", "wang")
    lock = store.issue("lock", "LK-01")
    declarant = store.issue("declarant", "acme")
    customs = store.issue("customs", "officer-li")
    assert declarant.secret.get_secret_value().startswith("slt_")
    assert store.verify_password("wang", operator.secret.get_secret_value()) == operator
    assert store.verify_password("wang", "wrong") is None
    assert store.verify_password("nobody", "x") is None
    assert (
        store.verify_password("LK-01", lock.secret.get_secret_value()) is None
    )  # a lock is no operator
    assert store.identify_token(declarant.secret.get_secret_value()) == declarant
    assert store.identify_token(customs.secret.get_secret_value()) == customs
    assert store.identify_token(operator.secret.get_secret_value()) is None
    assert store.identify_token("slt_forged") is None
    assert store.keys("lock") == {"LK-01": lock.key}


def test_cli_issue_list_revoke_never_prints_a_secret_unasked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = str(tmp_path / "c")
    assert main(["credentials", "--dir", directory, "issue", "lock", "LK-07"]) == 0
    assert main(["credentials", "--dir", directory, "issue", "worker"]) == 0
    assert main(["credentials", "--dir", directory, "list"]) == 0
    out = capsys.readouterr().out
    secret = CredentialStore(directory).get("LK-07").secret.get_secret_value()
    assert secret not in out and "LK-07" in out and "worker" in out
    assert main(["credentials", "--dir", directory, "issue", "gate", "g1", "--print-secret"]) == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert printed["secret"] == CredentialStore(directory).get("g1").secret.get_secret_value()
    assert main(["credentials", "--dir", directory, "revoke", "LK-07"]) == 0
    assert CredentialStore(directory).find("LK-07") is None
    assert main(["credentials", "--dir", directory, "revoke", "LK-07"]) == 2


def test_the_stream_key_rotates_with_a_grace_period_for_the_previous_one(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "creds")
    with pytest.raises(CredentialError, match="credentials issue stream"):
        store.stream_keys()
    first = store.issue("stream")
    assert first.key is not None and store.stream_keys() == [
        bytes.fromhex(first.key.get_secret_value())
    ]
    second = store.issue("stream", rotate=True)
    assert second.key is not None
    keys = [bytes.fromhex(k.get_secret_value()) for k in (second.key, first.key)]
    assert CredentialStore(tmp_path / "creds").stream_keys() == keys  # current first, then previous
    assert store.stream_keys(now=second.previous_until + 1) == keys[:1]  # grace over
    assert stat.S_IMODE((tmp_path / "creds" / "credentials.json").stat().st_mode) == 0o600
    with pytest.raises(CredentialError, match="called 'stream'"):
        store.issue("stream", "streamer")
