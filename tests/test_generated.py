"""The committed Swift codecs must match what the generator makes from schema/."""
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_generated_code_is_current():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_messages.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_check_notices_a_stale_file():
    # The check itself must be able to fail: run it on a copy with one schema field changed.
    with tempfile.TemporaryDirectory() as d:
        for sub in ("schema", "tools"):
            shutil.copytree(os.path.join(ROOT, sub), os.path.join(d, sub))
        for target in ("KafkaProtocol", "CodecCheck"):
            shutil.copytree(os.path.join(ROOT, "Sources", target, "Generated"),
                            os.path.join(d, "Sources", target, "Generated"))
        path = os.path.join(d, "schema", "InitProducerId.schema")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace("TransactionTimeoutMs", "TransactionTimeoutMillis"))
        r = subprocess.run([sys.executable, os.path.join(d, "tools", "gen_messages.py"), "--check"], capture_output=True, text=True)
        assert r.returncode == 1
        stale = r.stderr.split(": ", 1)[1].strip().split(", ")
        assert stale == ["InitProducerId+JSON.swift", "InitProducerId.swift"]
