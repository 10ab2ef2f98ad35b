"""Starting, adopting and stopping server processes under a run directory, with a state file."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

from smartlock.errors import InfrastructureError
from smartlock.local.stack.health import port_in_use
from smartlock.local.stack.model import STATE_FILE, Server, ServerInfo, StackInfo


def _alive(pid: int) -> bool:
    """True if ``pid`` runs. A zombie counts as gone, and is reaped if it is our child."""
    if _reap(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    if state == "Z":
        # Exiting. A multi-threaded child (redis) shows Z before its last thread is gone and
        # cannot be reaped until then: wait for it (instant for a non-child: ECHILD).
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        return False
    return True


def _reap(pid: int) -> bool:
    """Collects the exit status of ``pid`` if it is an exited child of this process."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return False


def _is_ours(pid: int, binary: str) -> bool:
    """True if ``pid`` still runs ``binary`` (guards against a recycled pid)."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return _alive(pid)  # no /proc: trust the pid file
    # Redis rewrites its title to "/usr/bin/redis-server 127.0.0.1:6379": keep the first word.
    return bool(argv0) and Path(argv0.split()[0]).name == Path(binary).name


def _read_pid(run_dir: Path, name: str) -> int | None:
    try:
        return int((run_dir / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def launch(server: Server, run_dir: Path) -> ServerInfo:
    """Writes the server's files and starts its process; does not wait for it to answer.

    Raises:
        InfrastructureError: its port is taken by another process.
    """
    if port_in_use(server.host, server.port):
        raise InfrastructureError(
            f"{server.name}: port {server.port} on {server.host} is already in use; stop what "
            f"listens there or choose another port (e.g. smartlock stack up --{_flag(server.name)} N)"
        )
    for directory in server.dirs:
        (run_dir / directory).mkdir(parents=True, exist_ok=True)
    for relative, text in server.files.items():
        _owner_only(run_dir / relative, text)  # configs may name secrets: owner-only
    log = run_dir / f"{server.name}.log"
    with open(log, "ab") as out:
        # A new session keeps Ctrl-C in the caller's terminal from reaching the servers.
        proc = subprocess.Popen(
            server.argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=run_dir,
            start_new_session=True,
            env={**os.environ, **server.env} if server.env else None,
        )
    (run_dir / f"{server.name}.pid").write_text(f"{proc.pid}\n")
    return ServerInfo(server.name, proc.pid, server.host, server.port, log, server.argv[0])


def _flag(name: str) -> str:
    return {
        "mosquitto": "mqtt-port",
        "redis": "redis-port",
        "tansu": "kafka-port",
        "seaweedfs": "s3-port",
    }.get(name, "port")


def wait_healthy(servers: Sequence[Server], infos: dict[str, ServerInfo], timeout: float) -> None:
    """Waits until every server answers its health check.

    Raises:
        InfrastructureError: a process exited, or a server did not answer in time; the
            message carries the end of its log.
    """
    pending = list(servers)
    deadline = time.monotonic() + timeout
    while pending:
        for server in list(pending):
            info = infos[server.name]
            if not _alive(info.pid):
                raise InfrastructureError(
                    f"{server.name} exited during start-up; its log {info.log} ends with:\n{_log_tail(info.log)}"
                )
            if server.is_healthy(timeout=min(2.0, max(deadline - time.monotonic(), 0.2))):
                pending.remove(server)
        if pending and time.monotonic() > deadline:
            names = ", ".join(s.name for s in pending)
            tails = "\n".join(
                f"--- {infos[s.name].log}\n{_log_tail(infos[s.name].log)}" for s in pending
            )
            raise InfrastructureError(f"{names} did not answer within {timeout:.0f} s\n{tails}")
        if pending:
            time.sleep(0.05)


def start_servers(run_dir: Path, servers: Sequence[Server], timeout: float = 30.0) -> StackInfo:
    """Starts ``servers`` (or adopts ones already running from this run directory).

    A server whose pid file names a live process of the same binary is kept if it answers
    on the requested port. On any failure the servers started here are stopped again.

    Raises:
        InfrastructureError: a port is taken, a server died or did not answer in time.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    infos: dict[str, ServerInfo] = {}
    started: list[str] = []
    try:
        for server in servers:
            existing = _adopt(run_dir, server)
            if existing is None:
                existing = launch(server, run_dir)
                started.append(server.name)
            infos[server.name] = existing
        wait_healthy(servers, infos, timeout)
    except BaseException:
        stop_servers(run_dir, started)
        raise
    _write_state(run_dir, infos)
    return StackInfo(run_dir, infos)


def _adopt(run_dir: Path, server: Server) -> ServerInfo | None:
    pid = _read_pid(run_dir, server.name)
    if pid is None or not _alive(pid) or not _is_ours(pid, server.argv[0]):
        return None
    recorded = _read_state(run_dir).get(server.name, {})
    if recorded.get("port") != server.port:
        raise InfrastructureError(
            f"{server.name} already runs from {run_dir} (pid {pid}, port {recorded.get('port')}); "
            f"run 'smartlock stack down --run-dir {run_dir}' first to change its port"
        )
    return ServerInfo(
        server.name, pid, server.host, server.port, run_dir / f"{server.name}.log", server.argv[0]
    )


def _write_state(run_dir: Path, infos: dict[str, ServerInfo]) -> None:
    state = _read_state(run_dir)
    for name, info in infos.items():
        state[name] = {**asdict(info), "log": str(info.log)}
    (run_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


def _read_state(run_dir: Path) -> dict[str, dict[str, object]]:
    try:
        return dict(json.loads((run_dir / STATE_FILE).read_text()))
    except (OSError, ValueError):
        return {}


def stop_servers(
    run_dir: Path, names: Iterable[str] | None = None, grace: float = 5.0
) -> list[str]:
    """Stops servers of ``run_dir`` (all with a pid file if ``names`` is None).

    Sends SIGTERM, waits up to ``grace`` seconds, then SIGKILL, and waits until each process
    is gone. Removes the pid files.

    Returns:
        The names of the servers that were running and are now stopped.
    """
    run_dir = Path(run_dir)
    names = sorted(p.stem for p in run_dir.glob("*.pid")) if names is None else list(names)
    state = _read_state(run_dir)
    victims: dict[str, int] = {}
    for name in names:
        pid = _read_pid(run_dir, name)
        binary = str(state.get(name, {}).get("binary", ""))
        if pid is not None and _alive(pid) and (not binary or _is_ours(pid, binary)):
            victims[name] = pid
    _signal_all(victims.values(), signal.SIGTERM)
    leftover = _wait_gone(victims.values(), grace)
    if leftover:
        _signal_all(leftover, signal.SIGKILL)
        leftover = _wait_gone(leftover, 5.0)
    if leftover:
        raise InfrastructureError(
            f"processes {sorted(leftover)} survived SIGKILL; check them with ps"
        )
    for name in names:
        (run_dir / f"{name}.pid").unlink(missing_ok=True)
    remaining = {k: v for k, v in state.items() if k not in set(names)}
    if state:
        (run_dir / STATE_FILE).write_text(json.dumps(remaining, indent=2) + "\n")
    return sorted(victims)


def _signal_all(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    pending = list(pids)
    deadline = time.monotonic() + timeout
    while pending:
        pending = [pid for pid in pending if _alive(pid)]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return pending


# --- the stack -------------------------------------------------------------------------------


def _owner_only(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when the file existed with a wider mode
    with os.fdopen(fd, "w") as out:
        out.write(text)
