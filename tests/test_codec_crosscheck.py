"""Our generated codecs against an independent implementation: kafka-python 3's protocol
classes, which it builds at run time from Kafka's own JSON message definitions.

For every API and every version in `ApiKey.versions`, request and response, two values
are built from kafka-python's schema (every field present at that version):
  - "full": every field set to a non-default value, arrays of two elements, nested
    structs filled, nullable fields non-null, tagged fields set (so they are written);
  - "sparse": nullable fields null, tagged fields at Kafka's default (so they are left
    out of the wire), arrays of one element.
Each value is then encoded by kafka-python and by our codec (`codec-check`, built from
Sources/CodecCheck), and each side decodes the other's bytes; both decodings must give
back the value field by field, consume every byte, and the two encodings must be equal.

What the wire cannot show is compared on the schemas themselves: every field's default
(what a decoder fills in for a field absent at a version) and that no field is nullable
where Kafka's JSON says it is not.

Values travel as JSON keyed by Kafka's field names (`TopicData`): ints as numbers,
bytes/records as hex, UUIDs as 8-4-4-4-12 strings, null for null.

kafka-python 3.0.12 has no ConsumerGroupHeartbeat (68) or ConsumerGroupDescribe (69), and
ReleaseStreams (10000) is Tern's own; those are skipped (KNOWN_GAPS) and any other gap fails
the test.
"""
import importlib
import importlib.metadata
import json
import os
import pkgutil
import subprocess
import sys
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODEC_CHECK = os.environ.get("CODEC_CHECK_BIN", os.path.join(ROOT, ".build", "release", "codec-check"))

sys.path.insert(0, os.path.join(ROOT, "tools"))
import gen_messages  # noqa: E402  (our schemas: the list of APIs and versions to cover)

kafka_protocol = pytest.importorskip("kafka.protocol")
from kafka.protocol.api_message import ApiMessage  # noqa: E402
from kafka.protocol.schemas.fields.base import BaseField  # noqa: E402
from kafka.protocol.schemas.load_json import load_json  # noqa: E402

# APIs kafka-python 3.0.12 has no schema for (checked by test_gaps_are_exactly_the_known_ones).
# ReleaseStreams is Tern's own inter-broker API: no Kafka schema exists for it.
KNOWN_GAPS = {"ConsumerGroupHeartbeat", "ConsumerGroupDescribe", "ReleaseStreams"}
VARIANTS = ("full", "sparse")
INT32_NULL_BITFIELD = -(2 ** 31)  # kafka-python reads an authorized-operations int32 of only bit 31 as None


def our_messages():
    """(api name, key, kind, lo, hi) for every message in schema/, as ApiKey.versions has them."""
    out = []
    for name in sorted(os.listdir(gen_messages.SCHEMA_DIR)):
        if name.endswith(".schema"):
            for msg in gen_messages.parse(os.path.join(gen_messages.SCHEMA_DIR, name)):
                out.append((name[: -len(".schema")], msg.key, msg.kind, msg.lo, msg.hi))
    return out


def kafka_python_classes():
    """{(api key, "request"|"response"): kafka-python message class}."""
    for m in pkgutil.walk_packages(kafka_protocol.__path__, "kafka.protocol."):
        if ".old" not in m.name:
            importlib.import_module(m.name)
    found = {}
    stack = list(ApiMessage.__subclasses__())
    while stack:
        c = stack.pop()
        stack.extend(c.__subclasses__())
        if getattr(c, "_class_version", None) is None:  # the primary class, not a C[v] wrapper
            found[(c.API_KEY, c.type)] = c
    return found


KP = kafka_python_classes()
CASES = [(api, key, kind, v) for api, key, kind, lo, hi in our_messages() for v in range(lo, hi + 1)]


# -- kafka-python's schema as a tree keyed by Kafka's field names ---------------------------


class Spec:
    """One field: its Kafka name (from the unpatched JSON; kafka-python renames a few),
    kafka-python's attribute name and field object, and its sub-fields."""

    def __init__(self, field, raw):
        self.field = field
        self.name = raw["name"]
        self.attr = field.name
        self.type = None  # the simple type, or the element type of an array of simple values
        if field.is_array() and not field.is_struct_array():
            self.type = field.array_of.type_str
        elif not (field.is_struct() or field.is_struct_array()):
            self.type = field.type_str
        # kafka-python patches the authorized-operations int32s into sets of bit numbers.
        self.bitfield = self.type == "bitfield"
        if self.bitfield:
            self.type = "int32"
        inner = field.array_of if field.is_struct_array() else field
        self.children = specs(inner._fields, raw["fields"]) if "fields" in raw else []

    def present(self, v):
        return self.field.for_version_q(v)

    def nullable(self, v):
        return self.field.nullable_for_version_q(v)

    def tagged(self, v):
        return self.field.tagged_field_q(v)


def specs(fields, raw_fields):
    assert len(fields) == len(raw_fields)
    return [Spec(f, r) for f, r in zip(fields, raw_fields)]


def top_specs(cls):
    return specs(cls._struct._fields, load_json(cls.__name__)["fields"])


# -- values --------------------------------------------------------------------------------


class Counter:
    def __init__(self):
        self.n = 0

    def next(self):
        self.n += 1
        return self.n


def simple_value(t, n, name):
    """A value of type t that does not fit the next smaller type (catches width mistakes)."""
    if t == "int8":
        return 10 + n % 100
    if t == "int16":
        return 300 + n
    if t == "uint16":
        return 40000 + n  # above int16's range: catches signedness
    if t == "int32" or t == "bitfield":
        return 70000 + 13 * n
    if t == "int64":
        return 5_000_000_000 + n
    if t == "float64":
        return n + 0.25
    if t == "bool":
        return n % 2 == 1
    if t == "string":
        return f"{name}-{n}-é€"  # multi-byte UTF-8: lengths are bytes, not characters
    if t in ("bytes", "records"):
        return bytes((n + i) % 256 for i in range(3 + n % 3)).hex()
    if t == "uuid":
        return str(uuid.UUID(int=(n * 0x0123456789ABCDEF) << 8 | n))
    raise AssertionError(t)


def default_value(s, v):
    """Kafka's default of a field, in the JSON form (what a decoder fills in for an absent tag)."""
    d = s.field.default
    if s.children:
        if s.field.is_struct_array():
            return None if d is None else []
        return {c.name: default_value(c, v) for c in s.children if c.present(v)}
    if s.field.is_array():
        return None if d is None else []
    return simple_to_json(s.type, d, s.bitfield)


def build(spec_list, v, variant, counter):
    out = {}
    for s in spec_list:
        if not s.present(v):
            continue
        if variant == "sparse" and s.tagged(v):
            out[s.name] = default_value(s, v)
        elif variant == "sparse" and s.nullable(v):
            out[s.name] = None
        else:
            out[s.name] = build_field(s, v, variant, counter)
    return out


def build_field(s, v, variant, counter):
    count = 2 if variant == "full" else 1
    if s.field.is_struct_array():
        return [build(s.children, v, variant, counter) for _ in range(count)]
    if s.children:
        return build(s.children, v, variant, counter)
    if s.field.is_array():
        return [simple_value(s.type, counter.next(), s.name) for _ in range(count)]
    value = simple_value(s.type, counter.next(), s.name)
    if s.tagged(v) and value == default_value(s, v):  # a tagged field at its default is not written
        value = simple_value(s.type, counter.next(), s.name)
    return value


# -- JSON form <-> kafka-python objects -------------------------------------------------------


def simple_to_json(t, val, bitfield=False):
    if bitfield:
        if val is None:
            return INT32_NULL_BITFIELD
        n = sum(1 << b for b in val)
        return n - (1 << 32) if n >= 1 << 31 else n
    if t == "uuid":
        return str(val or uuid.UUID(int=0))  # kafka-python reads the zero UUID as None
    if t in ("bytes", "records"):
        return None if val is None else bytes(val).hex()
    return val


def simple_from_json(t, val, bitfield=False):
    if bitfield:
        if val == INT32_NULL_BITFIELD:
            return None
        return {b for b in range(32) if (val & 0xFFFFFFFF) >> b & 1}
    if t == "uuid":
        return uuid.UUID(val)
    if t in ("bytes", "records"):
        return None if val is None else bytes.fromhex(val)
    return val


def to_kp(spec_list, value, v, data_class):
    kwargs = {}
    for s in spec_list:
        if s.present(v):
            kwargs[s.attr] = field_to_kp(s, value[s.name], v)
    return data_class(version=v, **kwargs)


def field_to_kp(s, val, v):
    if val is None:
        return None
    if s.field.is_struct_array():
        return [to_kp(s.children, item, v, s.field.data_class) for item in val]
    if s.children:
        if s.tagged(v) and val == default_value(s, v):
            return None  # kafka-python leaves a tagged struct out when it is None
        return to_kp(s.children, val, v, s.field.data_class)
    if s.field.is_array():
        return [simple_from_json(s.type, x) for x in val]
    return simple_from_json(s.type, val, s.bitfield)


def from_kp(spec_list, obj, v, path, problems):
    if getattr(obj, "unknown_tags", None):
        problems.append(f"{path}: tags kafka-python does not know: {sorted(obj.unknown_tags)}")
    out = {}
    for s in spec_list:
        if s.present(v):
            out[s.name] = field_from_kp(s, getattr(obj, s.attr), v, f"{path}.{s.name}", problems)
    return out


def field_from_kp(s, val, v, path, problems):
    if s.field.is_struct_array():
        return None if val is None else [from_kp(s.children, x, v, f"{path}[{i}]", problems) for i, x in enumerate(val)]
    if s.children:
        if val is None:
            return default_value(s, v) if s.tagged(v) else None
        return from_kp(s.children, val, v, path, problems)
    if s.field.is_array():
        return None if val is None else [simple_to_json(s.type, x) for x in val]
    return simple_to_json(s.type, val, s.bitfield)


def kp_encode(cls, specs_, value, v):
    return ApiMessage.encode(to_kp(specs_, value, v, cls), version=v)  # the client's own (compiled) path


def kp_decode(cls, specs_, data, v):
    """Decodes like ApiMessage.decode (minus ApiVersionsResponse's error-code special case),
    and also checks that every byte was read."""
    flexible = cls.flexible_version_q(v)
    decode = cls._struct.compiled_decode_from(v, compact=flexible, tagged=flexible, data_class=cls)
    obj, pos = decode(memoryview(data), 0)
    problems = []
    if pos != len(data):
        problems.append(f"kafka-python read {pos} of {len(data)} bytes")
    return from_kp(specs_, obj, v, cls.__name__, problems), problems


# -- comparison --------------------------------------------------------------------------------


def diff(want, got, path, out):
    if isinstance(want, dict) and isinstance(got, dict):
        for k in want.keys() | got.keys():
            if k not in got:
                out.append(f"{path}.{k}: missing")
            elif k not in want:
                out.append(f"{path}.{k}: unexpected field")
            else:
                diff(want[k], got[k], f"{path}.{k}", out)
    elif isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            out.append(f"{path}: {len(want)} items, got {len(got)}")
        for i, (a, b) in enumerate(zip(want, got)):
            diff(a, b, f"{path}[{i}]", out)
    elif type(want) is not type(got) or want != got:  # type check: True != 1 here
        out.append(f"{path}: want {want!r}, got {got!r}")
    return out


# -- the Swift side ----------------------------------------------------------------------------


def codec_check(requests):
    """Runs codec-check once over all requests; returns its answers in order."""
    if not os.path.exists(CODEC_CHECK):
        pytest.fail(f"{CODEC_CHECK} is missing: build it with `swift build -c release --product codec-check`")
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in requests)
    r = subprocess.run([CODEC_CHECK], input=text.encode(), capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    answers = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert len(answers) == len(requests), r.stderr.decode()
    return answers


@pytest.fixture(scope="module")
def results():
    """Everything the Swift side has to do, in one run of codec-check:
    {(api, version, kind, variant): dict(value, py_bytes, py_error, sw_encode, sw_decode)}."""
    out = {}
    requests = []
    for api, key, kind, v in CASES:
        cls = KP.get((key, kind))
        if cls is None or v > cls.max_version:
            continue
        specs_ = top_specs(cls)
        for variant in VARIANTS:
            value = build(specs_, v, variant, Counter())
            case = {"value": value, "py_error": None}
            try:
                case["py_bytes"] = kp_encode(cls, specs_, value, v)
            except Exception as e:  # reported by the test, not here
                case["py_bytes"], case["py_error"] = None, f"kafka-python cannot encode: {e!r}"
            head = {"api": key, "version": v, "kind": kind}
            case["sw_encode"] = len(requests)
            requests.append({"op": "encode", **head, "value": value})
            case["sw_decode"] = len(requests)
            requests.append({"op": "decode", **head, "hex": (case["py_bytes"] or b"").hex()})
            out[(api, v, kind, variant)] = case
    answers = codec_check(requests)
    for case in out.values():
        case["sw_encode"] = answers[case["sw_encode"]]
        case["sw_decode"] = answers[case["sw_decode"]]
    return out


def test_codec_check_covers_every_api_version():
    """The Swift tool's ApiKey list is the one parametrizing this file."""
    [answer] = codec_check([{"op": "apis"}])
    names = {f"{api}{kind.capitalize()}" for api, _, kind, _, _ in our_messages()}
    swift = {(a["key"], v) for a in answer["apis"] for v in range(a["min"], a["max"] + 1)}
    ours = {(key, v) for _, key, kind, v in CASES if kind == "request"}
    assert swift == ours
    assert len(answer["apis"]) == len({k for _, k, _, _ in CASES})
    assert {a[k] for a in answer["apis"] for k in ("request", "response")} == names


def test_gaps_are_exactly_the_known_ones():
    missing = {api for api, key, kind, _ in CASES if (key, kind) not in KP}
    assert missing == KNOWN_GAPS
    beyond = sorted({(api, v) for api, key, kind, v in CASES if (key, kind) in KP and v > KP[(key, kind)].max_version})
    assert beyond == []


# -- what the wire cannot show: defaults, and null allowed where Kafka allows none -------------

MESSAGES = [(api, msg) for api in sorted({a for a, *_ in our_messages()})
            for msg in gen_messages.parse(os.path.join(gen_messages.SCHEMA_DIR, api + ".schema"))]


def normal_default(default, type_):
    """A schema default (ours or Kafka's JSON) in one spelling; absent means Kafka's zero value."""
    if default in (None, ""):
        if type_.startswith("[]"):
            return "[]"
        return {"string": '""', "bytes": "b''", "records": "b''", "bool": "false", "uuid": "zero"}.get(
            type_, "{}" if type_[0].isupper() else "0")
    d = str(default)
    if d == "null":
        return "null"
    if type_ in ("int8", "int16", "uint16", "int32", "int64"):
        return str(int(d, 0))
    if type_ == "float64":
        return repr(float(d))
    if type_ == "bool":
        return d.lower()
    return repr(d.strip('"'))


def compare_metadata(ours, theirs, lo, hi, path, out):
    by_name = {f["name"]: f for f in theirs}
    for f in ours:
        if f.versions.disjoint(lo, hi):
            continue
        t = by_name.get(f.name)
        if t is None:
            out.append(f"{path}.{f.name}: not in Kafka's JSON")
            continue
        a, b = normal_default(f.default, f.type), normal_default(t.get("default"), t["type"])
        if a != b:
            out.append(f"{path}.{f.name}: default {a}, Kafka's {b}")
        kafka_nullable = BaseField.parse_versions(t.get("nullableVersions")) or (-1, -1)
        for v in range(max(lo, f.versions.lo), hi + 1):
            if f.versions.disjoint(v, v):
                continue
            mine = not f.nullable.disjoint(v, v)
            if mine != (kafka_nullable[0] <= v <= kafka_nullable[1]):
                out.append(f"{path}.{f.name}: nullable at v{v} is {mine} here, {not mine} in Kafka's JSON")
        compare_metadata(f.children, t.get("fields", []), lo, hi, f"{path}.{f.name}", out)


@pytest.mark.parametrize("api,msg", MESSAGES, ids=[m.name for _, m in MESSAGES])
def test_schema_defaults_and_nullability(api, msg):
    if (msg.key, msg.kind) not in KP:
        assert api in KNOWN_GAPS
        pytest.skip(f"kafka-python {importlib.metadata.version('kafka-python')} has no {msg.name} schema")
    problems = []
    compare_metadata(msg.fields, load_json(msg.name)["fields"], msg.lo, msg.hi, msg.name, problems)
    assert not problems, "\n".join(problems)


# -- the wire ------------------------------------------------------------------------------------


@pytest.mark.parametrize("api,key,kind,version", CASES, ids=[f"{a}-v{v}-{k}" for a, _, k, v in CASES])
def test_crosscheck(results, api, key, kind, version):
    if (key, kind) not in KP:
        assert api in KNOWN_GAPS
        pytest.skip(f"kafka-python {importlib.metadata.version('kafka-python')} has no {api} schema")
    cls = KP[(key, kind)]
    specs_ = top_specs(cls)
    problems = []
    for variant in VARIANTS:
        case = results[(api, version, kind, variant)]
        where = f"{variant}"
        value = case["value"]
        if case["py_error"]:
            problems.append(f"{where}: {case['py_error']}")
            continue
        # kafka-python encodes, we decode.
        dec = case["sw_decode"]
        if "error" in dec:
            problems.append(f"{where}: our decoder rejects kafka-python's bytes: {dec['error']}")
        else:
            problems += [f"{where}: kafka-python -> ours: {d}" for d in diff(value, dec["value"], cls.__name__, [])]
        # We encode, kafka-python decodes.
        enc = case["sw_encode"]
        if "error" in enc:
            problems.append(f"{where}: our codec cannot take the value: {enc['error']}")
            continue
        ours = bytes.fromhex(enc["hex"])
        try:
            back, decode_problems = kp_decode(cls, specs_, ours, version)
            problems += [f"{where}: ours -> kafka-python: {p}" for p in decode_problems]
            problems += [f"{where}: ours -> kafka-python: {d}" for d in diff(value, back, cls.__name__, [])]
        except Exception as e:
            problems.append(f"{where}: kafka-python cannot decode our bytes: {e!r}")
        if ours != case["py_bytes"]:
            problems.append(f"{where}: encodings differ:\n  kafka-python {case['py_bytes'].hex()}\n  ours         {ours.hex()}")
    assert not problems, "\n".join(problems)
