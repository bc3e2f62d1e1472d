"""Real servers for the tests: Mosquitto, InfluxDB and PostgreSQL.

Each fixture starts its own server from the Debian package's binary, on free
loopback ports, in a temporary folder, and stops it after the session. Nothing
touches the machine's own services, ports or data. Servers start lazily: a
run that needs none of them starts none.

- `mosquitto`: password file and ACL (per-user topic rules) so tests can
  check that a gateway is confined to its prefix; `add_user` reloads the
  broker with SIGHUP like an operator would.
- `influxd`: InfluxDB 1.x (`influxd run -config`), every listener on
  127.0.0.1, HTTP auth on with an admin user, the v1 `/write` and `/query`
  API that InfluxDB 1.x, 2.x and 3.x all serve.
- `postgres`: initdb + pg_ctl as the `postgres` user (PostgreSQL refuses
  root), listening on 127.0.0.1 only, fsync off (test data is disposable).
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

START_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_until(
    ready: Callable[[], bool], *, what: str, process: subprocess.Popen[bytes], log: Path
) -> None:
    """Poll `ready` until it holds; fail with the server's log if it dies or times out."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{tail(log)}")
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready after {START_TIMEOUT_S} s:\n{tail(log)}")


def tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def require_binary(path: str, package: str) -> str:
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: install the Debian package {package} (make test does)")
    return path


# --- Mosquitto --------------------------------------------------------------


@dataclass
class MosquittoServer:
    """A running Mosquitto with a password file and an ACL file."""

    host: str
    port: int
    directory: Path
    process: subprocess.Popen[bytes] = field(init=False)
    admin_username: str = "vs-admin"
    admin_password: str = field(default_factory=lambda: secrets.token_hex(12))
    _acl: dict[str, list[str]] = field(default_factory=dict)

    @property
    def password_file(self) -> Path:
        return self.directory / "passwd"

    @property
    def acl_file(self) -> Path:
        return self.directory / "acl"

    def add_user(self, username: str, password: str, acl: list[str]) -> None:
        """Create or replace a broker user with its ACL rules, and reload.

        Args:
            username: the MQTT username.
            password: its password.
            acl: Mosquitto ACL lines for this user, e.g.
                ["topic write vs/v1/gw-a/#", "topic read vs/v1/gw-a/cmd/#"].
        """
        subprocess.run(
            ["mosquitto_passwd", "-b", str(self.password_file), username, password],
            check=True,
            capture_output=True,
        )
        self._acl[username] = list(acl)
        self._write_acl()
        self.reload()

    def add_gateway(self, gateway_id: str | None = None) -> tuple[str, str]:
        """Create a gateway's broker user, confined as provisioning confines it.

        It may publish under its own prefix and read its own command topics.

        Returns:
            (gateway id, password); the id is random unless given.
        """
        gateway = gateway_id or f"gw-{uuid.uuid4().hex[:8]}"
        password = secrets.token_hex(8)
        prefix = f"vs/v1/{gateway}"
        self.add_user(gateway, password, [f"topic write {prefix}/#", f"topic read {prefix}/cmd/#"])
        return gateway, password

    def _write_acl(self) -> None:
        blocks = [
            f"user {user}\n" + "".join(f"{rule}\n" for rule in rules)
            for user, rules in self._acl.items()
        ]
        self.acl_file.write_text("\n".join(blocks))

    def reload(self) -> None:
        """SIGHUP: Mosquitto rereads its password and ACL files."""
        marker = "Reloading config"
        seen = self.log.read_text(errors="replace").count(marker)
        self.process.send_signal(signal.SIGHUP)
        # The reload happens in Mosquitto's main loop, which logs it first.
        deadline = time.monotonic() + 5
        while self.log.read_text(errors="replace").count(marker) <= seen:
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not reload:\n{tail(self.log)}")
            time.sleep(0.02)
        time.sleep(0.05)

    @property
    def log(self) -> Path:
        return self.directory / "mosquitto.log"

    def start(self) -> None:
        """(Re)start the broker on the same port with the same users and ACLs."""
        binary = require_binary("/usr/sbin/mosquitto", "mosquitto")
        self.process = subprocess.Popen(
            [binary, "-c", str(self.directory / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(
            lambda: port_accepts(self.port), what="mosquitto", process=self.process, log=self.log
        )

    def stop(self) -> None:
        """Stop the broker (clients see it go away); `start` brings it back."""
        stop(self.process)


@dataclass(frozen=True)
class TlsFiles:
    """A broker's TLS listener: its certificate and key, and the CA that signed it."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_test_pki(directory: Path, common_name: str = "127.0.0.1") -> TlsFiles:
    """A throwaway CA and a server certificate for `common_name` (an IP SAN),
    made with the openssl command; a second call in another folder makes an
    unrelated CA."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    extensions = directory / "san.cnf"
    extensions.write_text(f"subjectAltName=IP:{common_name}\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=voltstack test CA",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca_cert),
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        f"/CN={common_name}",
        "-keyout",
        str(key),
        "-out",
        str(csr),
    )
    openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca_cert),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(extensions),
        "-out",
        str(cert),
    )
    return TlsFiles(ca_cert, cert, key)


def start_mosquitto(
    directory: Path, *, tls: TlsFiles | None = None, options: tuple[str, ...] = ()
) -> MosquittoServer:
    """Start a Mosquitto; with `tls`, its one listener speaks TLS (MQTTS);
    `options` are extra mosquitto.conf lines (e.g. ``max_queued_messages 0``)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = directory / "mosquitto.conf"
    server = MosquittoServer("127.0.0.1", port, directory)
    server.password_file.touch()
    server._acl[server.admin_username] = ["topic readwrite #"]
    server._write_acl()
    subprocess.run(
        [
            "mosquitto_passwd",
            "-b",
            str(server.password_file),
            server.admin_username,
            server.admin_password,
        ],
        check=True,
        capture_output=True,
    )
    config.write_text(
        "\n".join(
            [
                # Run as whoever runs the tests: as root Mosquitto would
                # otherwise switch to the `mosquitto` user and lose our files.
                f"user {pwd.getpwuid(os.getuid()).pw_name}",
                "per_listener_settings false",
                f"listener {port} 127.0.0.1",
                *(
                    [
                        f"cafile {tls.ca_file}",
                        f"certfile {tls.cert_file}",
                        f"keyfile {tls.key_file}",
                    ]
                    if tls
                    else []
                ),
                "allow_anonymous false",
                f"password_file {server.password_file}",
                f"acl_file {server.acl_file}",
                # Sessions and queued QoS 1 messages survive a restart (tests
                # stop and start the broker under a running agent).
                "persistence true",
                f"persistence_location {directory}/",
                f"log_dest file {server.log}",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "log_type information",
                *options,
                "",
            ]
        )
    )
    server.log.touch()
    server.start()
    return server


def stop_mosquitto(server: MosquittoServer) -> None:
    server.stop()


@pytest.fixture(scope="module")
def tls_broker(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[MosquittoServer, TlsFiles]]:
    """A Mosquitto with only a TLS listener, and the test PKI it trusts."""
    folder = tmp_path_factory.mktemp("tls-broker")
    files = make_test_pki(folder / "pki")
    broker = start_mosquitto(folder / "broker", tls=files)
    yield broker, files
    stop_mosquitto(broker)


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    """A Mosquitto broker on 127.0.0.1 with password and ACL files."""
    server = start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield server
    stop(server.process)


# --- InfluxDB ---------------------------------------------------------------


@dataclass
class InfluxServer:
    """A running influxd (1.x) with auth on and an admin user."""

    host: str
    port: int
    directory: Path
    process: subprocess.Popen[bytes]
    admin_username: str = "vs-admin"
    admin_password: str = field(default_factory=lambda: secrets.token_hex(12))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _request(self, path: str, params: dict[str, str], body: bytes | None = None) -> bytes:
        query = urllib.parse.urlencode(
            {"u": self.admin_username, "p": self.admin_password, **params}
        )
        request = urllib.request.Request(f"{self.url}{path}?{query}", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return bytes(response.read())

    def query(self, influxql: str, database: str | None = None) -> dict[str, object]:
        """Run InfluxQL through the v1 `/query` endpoint; return the decoded JSON."""
        params = {"q": influxql, "epoch": "ns"}
        if database:
            params["db"] = database
        result: dict[str, object] = json.loads(self._request("/query", params))
        return result

    def write(self, database: str, lines: str, precision: str = "ns") -> None:
        """Write line protocol through the v1 `/write` endpoint."""
        self._request("/write", {"db": database, "precision": precision}, lines.encode())

    def create_database(self, name: str) -> None:
        self.query(f'CREATE DATABASE "{name}"')

    @property
    def log(self) -> Path:
        return self.directory / "influxd.log"

    def pings(self) -> bool:
        """True if ``GET /ping`` answers 204 right now."""
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as response:
                return bool(response.status == 204)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """Stop influxd (clients get connection refused); `start` brings it back."""
        stop(self.process)

    def kill(self) -> None:
        """SIGKILL influxd, like a crash: only what its WAL holds survives."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def start(self) -> None:
        """(Re)start influxd on the same ports and folders: users and data are kept."""
        self.process = _launch_influxd(self.directory)
        wait_until(self.pings, what="influxd", process=self.process, log=self.log)


def _influx_config(directory: Path, http_port: int, rpc_port: int) -> str:
    return f"""
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{directory}/meta"

[data]
  dir = "{directory}/data"
  wal-dir = "{directory}/wal"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = true
  log-enabled = false

[logging]
  level = "warn"

[subscriber]
  enabled = false

[continuous_queries]
  log-enabled = false
"""


def _launch_influxd(directory: Path) -> subprocess.Popen[bytes]:
    """Run influxd on the config in `directory`, appending to its log."""
    binary = require_binary("/usr/bin/influxd", "influxdb")
    with (directory / "influxd.log").open("ab") as log_file:
        return subprocess.Popen(
            [binary, "run", "-config", str(directory / "influxdb.conf")],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


def start_influxd(directory: Path) -> InfluxServer:
    http_port, rpc_port = free_port(), free_port()
    config = directory / "influxdb.conf"
    config.write_text(_influx_config(directory, http_port, rpc_port))
    process = _launch_influxd(directory)
    server = InfluxServer("127.0.0.1", http_port, directory, process)
    wait_until(server.pings, what="influxd", process=process, log=server.log)
    # With auth on and no user yet, InfluxDB 1.x accepts exactly this query.
    create_admin = (
        f"CREATE USER \"{server.admin_username}\" WITH PASSWORD '{server.admin_password}' "
        "WITH ALL PRIVILEGES"
    )
    body = urllib.parse.urlencode({"q": create_admin}).encode()
    urllib.request.urlopen(f"{server.url}/query", data=body, timeout=10).close()
    return server


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    """An influxd on 127.0.0.1 with auth on; `influxd.admin_username/password`."""
    server = start_influxd(tmp_path_factory.mktemp("influxd"))
    yield server
    stop(server.process)


# --- PostgreSQL -------------------------------------------------------------


@dataclass
class PostgresServer:
    """A running PostgreSQL cluster with one empty database for the tests."""

    host: str
    port: int
    directory: Path
    bin_dir: Path
    database: str = "voltstack_test"
    user: str = "postgres"

    @property
    def url(self) -> str:
        """SQLAlchemy URL (psycopg 3 driver)."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{self.database}"

    @property
    def dsn(self) -> str:
        """libpq connection string for psycopg."""
        return f"host={self.host} port={self.port} user={self.user} dbname={self.database}"


def _postgres_bin_dir() -> Path:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3])
    )
    if not candidates:
        pytest.fail("PostgreSQL server binaries are missing: install the Debian package postgresql")
    return Path(candidates[-1]).parent


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the `postgres` user."""
    if os.getuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def start_postgres() -> tuple[PostgresServer, Path]:
    bin_dir = _postgres_bin_dir()
    # Not under pytest's tmp folder: that one is private to root, and the
    # server runs as `postgres`.
    directory = Path(tempfile.mkdtemp(prefix="voltstack-pg-"))
    if os.getuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    data, log = directory / "data", directory / "postgres.log"
    port = free_port()
    subprocess.run(
        _as_postgres(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
    )
    options = (
        f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    subprocess.run(
        _as_postgres(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-o",
                options,
                "-w",
                "-t",
                str(int(START_TIMEOUT_S)),
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    server = PostgresServer("127.0.0.1", port, directory, bin_dir)
    subprocess.run(
        _as_postgres(
            [
                str(bin_dir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                server.database,
            ]
        ),
        check=True,
        capture_output=True,
    )
    return server, data


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server on 127.0.0.1 with the empty database `voltstack_test`."""
    server, data = start_postgres()
    try:
        yield server
    finally:
        subprocess.run(
            _as_postgres(
                [str(server.bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
            ),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(server.directory, ignore_errors=True)
