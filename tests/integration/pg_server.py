"""A throwaway PostgreSQL server for the tests, from the system's binaries (Debian's
`postgresql` package: /usr/lib/postgresql/<version>/bin; tools/install-deps.sh installs it).

`initdb` refuses to run as root, so as root the server runs as the system user `tern-test`
(created with useradd if missing) through runuser. The server listens on 127.0.0.1 on a free
port, with password (SCRAM) authentication for user `tern`, and durability switched off
(fsync=off): it lives only as long as a test run.

From Python:
    server = PostgresServer().start()
    url = server.create_database()   # postgres://tern:...@127.0.0.1:PORT/tern_<random>
    server.stop()

From a shell (tools/test.sh):
    url=$(python3 tests/integration/pg_server.py start DIR)   # prints the URL of database `tern`
    python3 tests/integration/pg_server.py stop DIR
"""
import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

from s3_servers import free_low_port  # one free-port picker for every test server

USER = "tern"
PASSWORD = "tern-test-secret"
OS_USER = "tern-test"


def bin_dir():
    """Where initdb and pg_ctl are: TERN_PG_BIN, else the newest /usr/lib/postgresql/*/bin,
    else the PATH's. None if PostgreSQL is not installed."""
    if os.environ.get("TERN_PG_BIN"):
        return os.environ["TERN_PG_BIN"]
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def available():
    return bin_dir() is not None


def _ensure_os_user():
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OS_USER],
                       check=True, capture_output=True)


class PostgresServer:
    def __init__(self, directory=None):
        self.dir = directory or tempfile.mkdtemp(prefix="tern-pg-")
        os.makedirs(self.dir, exist_ok=True)
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "server.log")
        self.port = None
        self.bin = bin_dir()
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql; tools/install-deps.sh does it)")
        self.as_root = os.geteuid() == 0

    def _run(self, args, **kw):
        """Runs a PostgreSQL program, as OS_USER when we are root."""
        if self.as_root:
            args = ["runuser", "-u", OS_USER, "--"] + args
        return subprocess.run(args, check=True, capture_output=True, text=True, **kw)

    def url(self, database="tern", password=PASSWORD, port=None):
        return f"postgres://{USER}:{password}@127.0.0.1:{port or self.port}/{database}"

    def start(self, timeout=60):
        if self.as_root:
            _ensure_os_user()
            os.chmod(self.dir, 0o755)
            shutil.chown(self.dir, OS_USER, OS_USER)
        pwfile = os.path.join(self.dir, "pwfile")
        with open(pwfile, "w") as f:
            f.write(PASSWORD + "\n")
        if self.as_root:
            shutil.chown(pwfile, OS_USER, OS_USER)
        try:
            self._run([os.path.join(self.bin, "initdb"), "-D", self.data, "-U", USER, f"--pwfile={pwfile}",
                       "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C"])
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"initdb failed:\n{e.stdout}\n{e.stderr}") from None
        for attempt in range(5):
            self.port = free_low_port()
            opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            try:
                self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-l", self.log_path, "-o", opts,
                           "-w", "-t", str(timeout), "start"])
                break
            except subprocess.CalledProcessError as e:
                log = open(self.log_path).read() if os.path.exists(self.log_path) else ""
                if "already in use" in log and attempt < 4:
                    continue
                raise RuntimeError(f"pg_ctl start failed:\n{e.stdout}\n{e.stderr}\n{log[-3000:]}") from None
        with open(os.path.join(self.dir, "server.json"), "w") as f:
            json.dump({"port": self.port}, f)
        self.sql("CREATE DATABASE tern")
        return self

    def sql(self, statement, database="postgres"):
        """Runs one statement with psql over TCP (as the test user, with its password); returns
        the rows as lists of strings."""
        psql = os.path.join(self.bin, "psql")
        env = dict(os.environ, PGPASSWORD=PASSWORD)
        r = subprocess.run([psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", database,
                            "-X", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", statement],
                           capture_output=True, text=True, env=env, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"psql: {statement}: {r.stderr}")
        return [line.split("\t") for line in r.stdout.splitlines() if line]

    def create_database(self, name=None):
        """A new empty database; returns its URL."""
        name = name or "tern_" + uuid.uuid4().hex[:12]
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)

    def halt(self):
        """Stops the server (fast shutdown: connections are cut), keeping its data and port."""
        self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop"])

    def resume(self, timeout=60):
        """Starts a halted server again on the same port."""
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-l", self.log_path, "-o", opts,
                   "-w", "-t", str(timeout), "start"])

    def stop(self, remove=True):
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            try:
                self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m", "immediate", "-w", "stop"])
            except subprocess.CalledProcessError:
                pass
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)


def main(argv):
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print("usage: pg_server.py start|stop DIR", file=sys.stderr)
        return 2
    if argv[1] == "start":
        server = PostgresServer(argv[2]).start()
        print(server.url())
        return 0
    server = PostgresServer(argv[2])
    server.stop(remove=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
