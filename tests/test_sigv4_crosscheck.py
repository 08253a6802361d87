"""Our S3 request signing (Sources/ObjectStore/S3/SigV4.swift, S3RequestBuilder) against an
independent signer: botocore's S3SigV4Auth, at a fixed date.

Thousands of random requests (keys with every printable ASCII character, spaces, control
characters and non-ASCII; query strings with repeated names and characters to encode;
headers with odd case, runs of whitespace, duplicates and unsigned hop-by-hop names;
ranges; bodies; session tokens; path-style and virtual-hosted-style; http and https with
and without default ports; signed and UNSIGNED-PAYLOAD) go through the test-only
`s3-check sign` tool (Sources/S3Check), which builds each with the client's own code. For
each, the URL must be what botocore's serializer would send, and botocore, signing that
URL with the same headers and body, must produce the same Authorization header byte for
byte, and the same x-amz-* headers.
"""
import datetime
import json
import os
import random
import subprocess
from urllib.parse import quote

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
S3_CHECK = os.environ.get("S3_CHECK_BIN", os.path.join(ROOT, ".build", "release", "s3-check"))

botocore_auth = pytest.importorskip("botocore.auth")
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

FIXED = datetime.datetime(2026, 11, 23, 15, 4, 5, tzinfo=datetime.timezone.utc)
ENDPOINTS = [
    ("http://127.0.0.1:8333", True),
    ("http://localhost:9000", True),
    ("http://LocalHost:80", True),          # default port dropped, host lower-cased
    ("http://[::1]:9000", True),
    ("https://s3.amazonaws.com", False),
    ("https://s3.us-west-2.amazonaws.com:443", False),
    ("https://fly.storage.tigris.dev", False),
    ("https://minio.example.com:9443", False),
]
REGIONS = ["us-east-1", "eu-west-3", "ap-southeast-2", "auto", "garage"]
KEY_CHARS = (
    [chr(c) for c in range(0x21, 0x7F)] + [" ", " ", "/", "/", "/", "\t", "\x01", "\x7f"]
    + ["é", "ß", "中", "文", "🦉", "\u00a0", "\u2028", "ﬁ"]
    + list("abcdefghijklmnopqrstuvwxyz0123456789") * 3
)
QUERY_NAMES = ["list-type", "prefix", "continuation-token", "max-keys", "uploadId", "partNumber",
               "uploads", "delete", "x-id", "start-after", "encoding-type", "Weird Name", "a+b", "ü"]


def fixed_now():
    return FIXED.replace(tzinfo=None)


def rand_text(rng, n, chars=KEY_CHARS):
    return "".join(rng.choice(chars) for _ in range(n))


def rand_case(rng, name):
    return "".join(c.upper() if rng.random() < 0.3 else c for c in name)


def rand_value(rng):
    core = rand_text(rng, rng.randint(0, 12), [chr(c) for c in range(0x21, 0x7F)] + ["a", "b", "1"])
    parts = [core]
    for _ in range(rng.randint(0, 2)):
        parts.append(" " * rng.randint(1, 3) + ("\t" if rng.random() < 0.2 else "") + rand_text(rng, rng.randint(1, 5), list("xyz019")))
    return " " * rng.randint(0, 2) + "".join(parts) + " " * rng.randint(0, 2)


def make_case(rng, i):
    endpoint, ip_or_local = rng.choice(ENDPOINTS)
    path_style = True if "[" in endpoint else (rng.random() < 0.5)
    bucket = rand_text(rng, rng.randint(3, 20), list("abcdefghijklmnopqrstuvwxyz0123456789-"))
    bucket = "b" + bucket.strip("-") + "1"
    method = rng.choice(["GET", "PUT", "HEAD", "POST", "DELETE"])
    key = None if rng.random() < 0.1 else rand_text(rng, rng.randint(1, 40))
    query = []
    for _ in range(rng.choice([0, 0, 1, 2, 3, 5])):
        name = rng.choice(QUERY_NAMES)
        value = "" if rng.random() < 0.2 else rand_text(rng, rng.randint(0, 15))
        query.append([name, value])
    if query and rng.random() < 0.2:
        query.append([query[0][0], rand_text(rng, 3)])  # a repeated name: sorted by value too
    headers = []
    if rng.random() < 0.4:
        a = rng.randint(0, 1 << 30)
        headers.append([rand_case(rng, "Range"), f"bytes={a}-{a + rng.randint(0, 1 << 24)}"])
    if rng.random() < 0.3:
        headers.append([rand_case(rng, "If-None-Match"), "*"])
    if rng.random() < 0.3:
        headers.append([rand_case(rng, "Content-Type"), rng.choice(["application/xml", "application/octet-stream", "text/plain; charset=utf-8"])])
    if rng.random() < 0.3:
        headers.append(["Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg=="])
    for _ in range(rng.randint(0, 3)):
        headers.append([rand_case(rng, rng.choice(["x-amz-meta-a", "x-amz-meta-tern", "X-Custom"])), rand_value(rng)])
    if rng.random() < 0.2:
        headers.append([rng.choice(["User-Agent", "Expect", "Connection", "X-Amzn-Trace-Id"]), rand_value(rng) or "x"])
    rng.shuffle(headers)
    body = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 0, 1, 17, 1000])))
    token = None if rng.random() < 0.6 else rand_text(rng, rng.randint(20, 80), list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="))
    return {
        "endpoint": endpoint, "bucket": bucket, "path_style": path_style, "region": rng.choice(REGIONS),
        "access_key": "AKIA" + rand_text(rng, 16, list("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")),
        "secret_key": rand_text(rng, 40, list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")),
        "token": token, "unsigned": rng.random() < 0.4, "method": method, "key": key, "query": query,
        "headers": headers, "body_hex": body.hex(), "date": int(FIXED.timestamp()),
    }


def expected_url(case):
    """What botocore's REST serializer sends: the key quoted with '/' and '~' safe, query
    names and values with '-_.~' safe (botocore.utils.percent_encode)."""
    scheme, rest = case["endpoint"].split("://", 1)
    host = rest.lower()
    if (scheme, host.rsplit(":", 1)[-1]) in (("https", "443"), ("http", "80")) and not host.endswith("]"):
        host = host.rsplit(":", 1)[0]
    path = ""
    if case["path_style"]:
        path = "/" + case["bucket"]
        if case["key"] is not None:
            path += "/" + quote(case["key"], safe="/~")
    else:
        host = case["bucket"] + "." + host
        path = "/" + (quote(case["key"], safe="/~") if case["key"] is not None else "")
    q = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in case["query"])
    return f"{scheme}://{host}{path}" + ("?" + "&".join(f"{k}={v}" for k, v in q) if q else "")


def botocore_sign(case, url):
    base = url.split("?", 1)[0]
    request = AWSRequest(method=case["method"], url=base, params=[tuple(p) for p in case["query"]],
                         data=bytes.fromhex(case["body_hex"]))
    for name, value in case["headers"]:
        request.headers[name] = value  # email.message semantics: a repeated name is added
    unsigned = case["unsigned"] and base.startswith("https")
    if unsigned:
        request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    creds = Credentials(case["access_key"], case["secret_key"], case["token"])
    signer = botocore_auth.S3SigV4Auth(creds, "s3", case["region"])
    signer.add_auth(request)
    return request


def run_tool(cases):
    if not os.path.exists(S3_CHECK):
        pytest.fail(f"{S3_CHECK} missing: swift build -c release --product s3-check")
    text = "".join(json.dumps(c) + "\n" for c in cases)
    out = subprocess.run([S3_CHECK, "sign"], input=text.encode(), capture_output=True, timeout=120, check=True).stdout
    return [json.loads(line) for line in out.decode().splitlines()]


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    monkeypatch.setattr(botocore_auth, "get_current_datetime", fixed_now)


def test_aws_documented_example():
    """AWS's own GET Object example (S3 API reference, 'Signature Calculations for the
    Authorization Header'), with its published signature."""
    case = {
        "endpoint": "https://s3.amazonaws.com", "bucket": "examplebucket", "path_style": False,
        "region": "us-east-1", "access_key": "AKIAIOSFODNN7EXAMPLE",
        "secret_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "token": None, "unsigned": False,
        "method": "GET", "key": "test.txt", "query": [], "headers": [["Range", "bytes=0-9"]],
        "body_hex": "", "date": int(datetime.datetime(2013, 5, 24, tzinfo=datetime.timezone.utc).timestamp()),
    }
    [got] = run_tool([case])
    assert got["url"] == "https://examplebucket.s3.amazonaws.com/test.txt"
    auth = dict((k, v) for k, v in got["headers"])["authorization"]
    assert auth == ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                    "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                    "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")


@pytest.mark.parametrize("seed", range(4))
def test_random_requests_match_botocore(seed):
    rng = random.Random(seed)
    cases = [make_case(rng, i) for i in range(500)]
    results = run_tool(cases)
    assert len(results) == len(cases)
    for case, got in zip(cases, results):
        assert "error" not in got, (case, got)
        url = expected_url(case)
        assert got["url"] == url, case
        ours = {}
        for k, v in got["headers"]:
            ours.setdefault(k, []).append(v)
        request = botocore_sign(case, url)
        theirs = {k.lower(): v for k, v in request.headers.items()}
        assert ours["authorization"] == [theirs["authorization"]], (case, ours, theirs)
        for name in ("x-amz-date", "x-amz-content-sha256", "x-amz-security-token"):
            assert ours.get(name, [None]) == [theirs.get(name)], (name, case)
        assert ours["host"] == [botocore_auth._host_from_url(url)]


def test_signing_changes_with_every_input():
    """A signer that ignored any input would still agree with itself: flip each one."""
    rng = random.Random(99)
    base = make_case(rng, 0)
    base.update(endpoint="http://127.0.0.1:8333", path_style=True, key="a/b c", method="PUT", token=None,
                query=[["partNumber", "1"]], headers=[["Range", "bytes=0-1"]], body_hex="00ff")
    variants = [dict(base, **change) for change in (
        {"key": "a/b d"}, {"method": "POST"}, {"query": [["partNumber", "2"]]}, {"headers": [["Range", "bytes=0-2"]]},
        {"body_hex": "00fe"}, {"region": "eu-west-1"}, {"secret_key": base["secret_key"] + "x"}, {"token": "t"},
        {"date": base["date"] + 1}, {"bucket": base["bucket"] + "x"}, {"endpoint": "http://127.0.0.1:8334"},
    )]
    results = run_tool([base] + variants)
    auths = [dict((k, v) for k, v in r["headers"])["authorization"] for r in results]
    assert len(set(auths)) == len(auths)
