#!/usr/bin/env python3
"""Generates Swift codecs for Kafka messages from the schemas in schema/*.schema.

    python3 tools/gen_messages.py            # rewrite the generated folders below
    python3 tools/gen_messages.py --check    # exit 1 if the committed files are stale

It writes the codecs into Sources/KafkaProtocol/Generated/, and JSON conversions of the
same structs into Sources/CodecCheck/Generated/ (test-only: the `codec-check` tool that
tests/test_codec_crosscheck.py drives, so the product carries none of it).

The schema format is described in schema/README.md.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_DIR = os.path.join(ROOT, "schema")
OUT_DIR = os.path.join(ROOT, "Sources", "KafkaProtocol", "Generated")
CHECK_OUT_DIR = os.path.join(ROOT, "Sources", "CodecCheck", "Generated")

PRIMITIVES = {
    "bool": ("Bool", "false"),
    "int8": ("Int8", "0"),
    "int16": ("Int16", "0"),
    "int32": ("Int32", "0"),
    "int64": ("Int64", "0"),
    "uint16": ("UInt16", "0"),
    "float64": ("Double", "0"),
    "string": ("String", '""'),
    "bytes": ("ByteBuffer", "ByteBuffer()"),
    "records": ("ByteBuffer", "ByteBuffer()"),
    "uuid": ("KafkaUUID", ".zero"),
}


class SchemaError(Exception):
    pass


class Versions:
    """A version range: lo..hi (hi None = open), or empty."""

    def __init__(self, text):
        text = text.strip()
        self.text = text
        if text == "none":
            self.lo, self.hi, self.empty = 0, -1, True
            return
        self.empty = False
        if text.endswith("+"):
            self.lo, self.hi = int(text[:-1]), None
        elif "-" in text:
            a, b = text.split("-")
            self.lo, self.hi = int(a), int(b)
        else:
            self.lo = self.hi = int(text)

    def covers(self, lo, hi):
        """True when every version in lo...hi is in this range."""
        if self.empty:
            return False
        return self.lo <= lo and (self.hi is None or self.hi >= hi)

    def disjoint(self, lo, hi):
        if self.empty:
            return True
        return (self.hi is not None and self.hi < lo) or self.lo > hi

    def condition(self, lo, hi, var="version"):
        """A Swift condition for `var in self`, simplified against the message range lo...hi.
        Returns None when always true, "false" when never."""
        if self.covers(lo, hi):
            return None
        if self.disjoint(lo, hi):
            return "false"
        parts = []
        if self.lo > lo:
            parts.append(f"{var} >= {self.lo}")
        if self.hi is not None and self.hi < hi:
            parts.append(f"{var} <= {self.hi}")
        return " && ".join(parts)


class Field:
    def __init__(self, name, type_, versions, attrs, line):
        self.name = name
        self.type = type_
        self.versions = Versions(versions)
        self.nullable = Versions(attrs.pop("nullable", "none"))
        self.tag = int(attrs.pop("tag")) if "tag" in attrs else None
        self.default = attrs.pop("default", None)
        if attrs:
            raise SchemaError(f"line {line}: unknown attributes {sorted(attrs)}")
        self.children = []
        self.line = line

    @property
    def is_array(self):
        return self.type.startswith("[]")

    @property
    def element(self):
        return self.type[2:] if self.is_array else self.type

    @property
    def is_struct(self):
        return self.element[0].isupper()

    @property
    def swift_name(self):
        n = self.name
        caps = len(n) - len(n.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
        if caps <= 1 or caps == len(n):
            n = n[:caps].lower() + n[caps:]
        else:  # "ACLs" -> "acLs" would be wrong; keep the capital that starts the next word
            n = n[: caps - 1].lower() + n[caps - 1 :]
        if n in ("protocol", "default", "internal", "operator", "repeat", "extension", "subscript", "where", "self", "init"):
            n = "`" + n + "`"
        return n


class Message:
    def __init__(self, kind, name, attrs, line):
        self.kind = kind
        self.name = name
        try:
            self.key = int(attrs.pop("key"))
            v = Versions(attrs.pop("versions"))
            self.lo, self.hi = v.lo, v.hi
            self.flexible = Versions(attrs.pop("flexible"))
        except KeyError as e:
            raise SchemaError(f"line {line}: message header lacks {e}")
        if attrs:
            raise SchemaError(f"line {line}: unknown attributes {sorted(attrs)}")
        self.fields = []


def parse(path):
    messages = []
    stack = []  # (indent, field list)
    with open(path) as f:
        for number, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].rstrip()
            if not line.strip():
                continue
            indent = len(line) - len(line.lstrip(" "))
            tokens = line.split()
            if indent == 0:
                if tokens[0] not in ("request", "response"):
                    raise SchemaError(f"{path}:{number}: expected request or response")
                attrs = dict(t.split("=", 1) for t in tokens[2:])
                msg = Message(tokens[0], tokens[1], attrs, number)
                messages.append(msg)
                stack = [(0, msg.fields)]
                continue
            if indent % 2:
                raise SchemaError(f"{path}:{number}: indent must be a multiple of two")
            level = indent // 2
            while stack and len(stack) > level:
                stack.pop()
            if len(stack) != level:
                raise SchemaError(f"{path}:{number}: field indented too far")
            if len(tokens) < 3:
                raise SchemaError(f"{path}:{number}: a field needs a name, a type and versions")
            attrs = {}
            for t in tokens[3:]:
                if "=" not in t:
                    raise SchemaError(f"{path}:{number}: bad attribute {t!r}")
                k, v = t.split("=", 1)
                attrs[k] = v
            field = Field(tokens[0], tokens[1], tokens[2], attrs, number)
            if not field.is_struct and field.element not in PRIMITIVES:
                raise SchemaError(f"{path}:{number}: unknown type {field.type}")
            stack[-1][1].append(field)
            stack.append((indent, field.children))
    for msg in messages:
        check(msg.fields, path)
    return messages


def check(fields, path):
    for f in fields:
        if f.is_struct and not f.children:
            raise SchemaError(f"{path}:{f.line}: struct {f.element} has no fields")
        if not f.is_struct and f.children:
            raise SchemaError(f"{path}:{f.line}: primitive {f.type} cannot have fields")
        check(f.children, path)


class Emitter:
    def __init__(self, msg):
        self.msg = msg
        self.lines = []
        self.structs = {}  # name -> signature, to emit each struct once
        self.buf = "buffer"  # the variable decoders read from

    def out(self, indent, text=""):
        self.lines.append(("    " * indent + text) if text else "")

    def flex_cond(self):
        return self.msg.flexible.condition(self.msg.lo, self.msg.hi)

    def nullable_anywhere(self, f):
        return not f.nullable.disjoint(self.msg.lo, self.msg.hi)

    def swift_type(self, f):
        base = f.element if f.is_struct else PRIMITIVES[f.element][0]
        t = f"[{base}]" if f.is_array else base
        return t + "?" if self.nullable_anywhere(f) else t

    def default_value(self, f):
        if f.default is not None:
            d = f.default
            if d == "null":
                return "nil"
            if f.element == "string":
                return '"' + d.strip('"') + '"'
            if f.element == "bool":
                return d.lower()
            if f.element in ("int8", "int16", "int32", "int64", "uint16", "float64"):
                return d
            raise SchemaError(f"line {f.line}: cannot use default {d} for {f.type}")
        if f.is_array:
            return "[]"
        if f.is_struct:
            return f"{f.element}()"
        return PRIMITIVES[f.element][1]

    # -- decoding ------------------------------------------------------------------

    def read_primitive(self, t, nullable):
        if t == "bool":
            return f"try {self.buf}.readKafkaBool()"
        if t == "float64":
            return f"try {self.buf}.readKafkaFloat64()"
        if t == "uuid":
            return f"try {self.buf}.readKafkaUUID()"
        if t in ("int8", "int16", "int32", "int64", "uint16"):
            return f"try {self.buf}.readKafka({PRIMITIVES[t][0]}.self)"
        if t == "string":
            return f"try {self.buf}.read{'KafkaNullableString' if nullable else 'KafkaString'}(compact: flexible)"
        if t in ("bytes", "records"):
            return f"try {self.buf}.read{'KafkaNullableBytes' if nullable else 'KafkaBytes'}(compact: flexible)"
        raise SchemaError(t)

    def emit_read(self, ind, f, target):
        """Emits statements assigning the decoded field to `target`."""
        lo, hi = self.msg.lo, self.msg.hi
        null_cond = f.nullable.condition(lo, hi)
        if f.is_array:
            elem = f"try {f.element}(from: &{self.buf}, version: version)" if f.is_struct else self.read_primitive(f.element, False)
            self.out(ind, f"if let count = try {self.buf}.readKafkaArrayCount(compact: flexible) {{")
            self.out(ind + 1, f"var items: [{f.element if f.is_struct else PRIMITIVES[f.element][0]}] = []")
            self.out(ind + 1, "items.reserveCapacity(count)")
            self.out(ind + 1, f"for _ in 0..<count {{ items.append({elem}) }}")
            self.out(ind + 1, f"{target} = items")
            if self.nullable_anywhere(f):
                if null_cond is None:
                    self.out(ind, f"}} else {{ {target} = nil }}")
                else:
                    self.out(ind, f"}} else if {null_cond} {{ {target} = nil }} else {{")
                    self.out(ind + 1, f'throw ProtocolError(.invalidLength, "null {f.name}")')
                    self.out(ind, "}")
            else:
                self.out(ind, "} else {")
                self.out(ind + 1, f'throw ProtocolError(.invalidLength, "null {f.name}")')
                self.out(ind, "}")
            return
        if f.is_struct:
            if self.nullable_anywhere(f):
                # Nullable structs are prefixed by an int8 presence marker.
                self.out(ind, f"if try {self.buf}.readKafka(Int8.self) < 0 {{ {target} = nil }} else {{ {target} = try {f.element}(from: &{self.buf}, version: version) }}")
            else:
                self.out(ind, f"{target} = try {f.element}(from: &{self.buf}, version: version)")
            return
        if f.element in ("string", "bytes", "records") and self.nullable_anywhere(f):
            if null_cond is None:
                self.out(ind, f"{target} = {self.read_primitive(f.element, True)}")
            else:
                self.out(ind, f"{target} = {null_cond} ? {self.read_primitive(f.element, True)} : {self.read_primitive(f.element, False)}")
            return
        self.out(ind, f"{target} = {self.read_primitive(f.element, False)}")

    # -- encoding ------------------------------------------------------------------

    def write_primitive(self, t, value, nullable):
        if t == "bool":
            return f"buffer.writeKafkaBool({value})"
        if t == "float64":
            return f"buffer.writeKafkaFloat64({value})"
        if t == "uuid":
            return f"buffer.writeKafkaUUID({value})"
        if t in ("int8", "int16", "int32", "int64", "uint16"):
            return f"buffer.writeInteger({value})"
        if t == "string":
            return f"buffer.write{'KafkaNullableString' if nullable else 'KafkaString'}({value}, compact: flexible)"
        if t == "bytes":
            return f"buffer.write{'KafkaNullableBytes' if nullable else 'KafkaBytes'}({value}, compact: flexible)"
        if t == "records":
            # `self.records` carries on in `self.recordsContinued` (see emit_struct).
            more = f"continued: {value.split(' ')[0]}Continued, " if value.startswith("self.") else ""
            return f"buffer.write{'KafkaNullableRecords' if nullable else 'KafkaRecords'}({value}, {more}compact: flexible)"
        raise SchemaError(t)

    def emit_write(self, ind, f, value):
        opt = self.nullable_anywhere(f)
        if f.is_array:
            if opt:
                self.out(ind, f"buffer.writeKafkaArrayCount({value}?.count, compact: flexible)")
                self.out(ind, f"for item in {value} ?? [] {{")
            else:
                self.out(ind, f"buffer.writeKafkaArrayCount({value}.count, compact: flexible)")
                self.out(ind, f"for item in {value} {{")
            if f.is_struct:
                self.out(ind + 1, "item.encode(into: &buffer, version: version)")
            else:
                self.out(ind + 1, self.write_primitive(f.element, "item", False))
            self.out(ind, "}")
            return
        if f.is_struct:
            if opt:
                self.out(ind, f"if let value = {value} {{ buffer.writeInteger(Int8(1)); value.encode(into: &buffer, version: version) }} else {{ buffer.writeInteger(Int8(-1)) }}")
            else:
                self.out(ind, f"{value}.encode(into: &buffer, version: version)")
            return
        if opt:
            if f.element in ("string", "bytes", "records"):
                null_cond = f.nullable.condition(self.msg.lo, self.msg.hi)
                fallback = '""' if f.element == "string" else "ByteBuffer()"
                if null_cond is None:
                    self.out(ind, self.write_primitive(f.element, value, True))
                else:
                    self.out(ind, f"if {null_cond} {{ {self.write_primitive(f.element, value, True)} }} else {{ {self.write_primitive(f.element, f'{value} ?? {fallback}', False)} }}")
                return
            raise SchemaError(f"line {f.line}: nullable {f.type} is not supported")
        self.out(ind, self.write_primitive(f.element, value, False))

    # -- structs -------------------------------------------------------------------

    def emit_struct(self, ind, name, fields, top):
        sig = repr([(f.name, f.type, f.versions.text, f.nullable.text, f.tag) for f in fields])
        if not top:
            if name in self.structs:
                if self.structs[name] != sig:
                    raise SchemaError(f"{self.msg.name}: struct {name} defined twice with different fields")
                return
            self.structs[name] = sig
        msg = self.msg
        conformance = "KafkaMessage" if top else "Sendable, Equatable"
        self.out(ind, f"public struct {name}: {conformance} {{")
        if top:
            self.out(ind + 1, f"public static let apiKey: Int16 = {msg.key}")
            self.out(ind + 1, f"public static let versions: ClosedRange<Int16> = {msg.lo}...{msg.hi}")
            flex = "nil" if msg.flexible.empty else str(msg.flexible.lo)
            self.out(ind + 1, f"public static let firstFlexibleVersion: Int16? = {flex}")
            self.out(ind)
        for f in fields:
            if f.versions.disjoint(msg.lo, msg.hi):
                continue
            self.out(ind + 1, f"/// Versions {f.versions.text}" + (f", nullable {f.nullable.text}" if not f.nullable.empty else "") + (f", tag {f.tag}" if f.tag is not None else "") + ".")
            self.out(ind + 1, f"public var {f.swift_name}: {self.swift_type(f)} = {self.default_value(f)}")
            if f.element == "records" and not f.is_array:
                self.out(ind + 1, f"/// More of `{f.swift_name}`: parts of the same record set that follow it (not a field")
                self.out(ind + 1, "/// on the wire; encoded after it, and never filled by decoding).")
                self.out(ind + 1, f"public var {f.swift_name}Continued: [ByteBuffer] = []")
        self.out(ind)
        self.out(ind + 1, "public init() {}")
        for f in fields:
            if f.is_struct and not f.versions.disjoint(msg.lo, msg.hi):
                self.out(ind)
                self.emit_struct(ind + 1, f.element, f.children, False)
        live = [f for f in fields if not f.versions.disjoint(msg.lo, msg.hi)]
        regular = [f for f in live if f.tag is None]
        tagged = sorted([f for f in live if f.tag is not None], key=lambda f: f.tag)
        flex_cond = self.flex_cond()
        flex_expr = "false" if msg.flexible.empty else (flex_cond or "true")
        # decode
        self.out(ind)
        self.out(ind + 1, "public init(from buffer: inout ByteBuffer, version: Int16) throws {")
        decode_let = len(self.lines)
        self.out(ind + 2, f"let flexible = {flex_expr}")
        for f in regular:
            cond = f.versions.condition(msg.lo, msg.hi)
            if cond is None:
                self.emit_read(ind + 2, f, f"self.{f.swift_name}")
            else:
                self.out(ind + 2, f"if {cond} {{")
                self.emit_read(ind + 3, f, f"self.{f.swift_name}")
                self.out(ind + 2, "}")
        if not msg.flexible.empty and not tagged:
            self.out(ind + 2, "if flexible { try buffer.skipTaggedFields() }")
        elif not msg.flexible.empty:
            self.out(ind + 2, "if flexible {")
            self.out(ind + 3, "let tagCount = try buffer.readUnsignedVarint()")
            self.out(ind + 3, "for _ in 0..<tagCount {")
            self.out(ind + 4, "let tag = try buffer.readUnsignedVarint()")
            self.out(ind + 4, "switch tag {")
            for f in tagged:
                cond = f.versions.condition(msg.lo, msg.hi)
                guard = "" if cond is None else f" where {cond}"
                self.out(ind + 4, f"case {f.tag}{guard}:")
                self.out(ind + 5, "let size = Int(try buffer.readUnsignedVarint())")
                self.out(ind + 5, 'guard var field = buffer.readSlice(length: size) else { throw ProtocolError(.truncated, "tagged field") }')
                self.buf = "field"
                self.emit_read(ind + 5, f, f"self.{f.swift_name}")
                self.buf = "buffer"
            self.out(ind + 4, "default:")
            self.out(ind + 5, "try buffer.skipTaggedField()")
            self.out(ind + 4, "}")
            self.out(ind + 3, "}")
            self.out(ind + 2, "}")
        self.out(ind + 1, "}")
        self.drop_unused_flexible(decode_let)
        # encode
        self.out(ind)
        self.out(ind + 1, "public func encode(into buffer: inout ByteBuffer, version: Int16) {")
        encode_let = len(self.lines)
        self.out(ind + 2, f"let flexible = {flex_expr}")
        for f in regular:
            cond = f.versions.condition(msg.lo, msg.hi)
            if cond is None:
                self.emit_write(ind + 2, f, f"self.{f.swift_name}")
            else:
                self.out(ind + 2, f"if {cond} {{")
                self.emit_write(ind + 3, f, f"self.{f.swift_name}")
                self.out(ind + 2, "}")
        if not msg.flexible.empty:
            self.out(ind + 2, "if flexible {")
            if tagged:
                self.out(ind + 3, "var tagCount: UInt32 = 0")
                conds = []
                for f in tagged:
                    vc = f.versions.condition(msg.lo, msg.hi)
                    c = f"self.{f.swift_name} != {self.default_value(f)}"
                    if vc:
                        c = f"{vc} && {c}"
                    conds.append(c)
                    self.out(ind + 3, f"if {c} {{ tagCount += 1 }}")
                self.out(ind + 3, "buffer.writeUnsignedVarint(tagCount)")
                for f, c in zip(tagged, conds):
                    self.out(ind + 3, f"if {c} {{")
                    self.out(ind + 4, f"buffer.writeTaggedField(tag: {f.tag}) {{ buffer in")
                    self.emit_write(ind + 5, f, f"self.{f.swift_name}")
                    self.out(ind + 4, "}")
                    self.out(ind + 3, "}")
            else:
                self.out(ind + 3, "buffer.writeUnsignedVarint(0)")
            self.out(ind + 2, "}")
        self.out(ind + 1, "}")
        self.drop_unused_flexible(encode_let)
        self.out(ind, "}")

    def drop_unused_flexible(self, index):
        """Removes the `let flexible` at `index` when the function body after it never reads it."""
        if not any(re.search(r"\bflexible\b", line) for line in self.lines[index + 1:]):
            del self.lines[index]


class JSONEmitter:
    """Emits, for codec-check only, a `JSONConvertible` extension of every struct of one message:
    the fields present at a version, keyed by their schema (= Kafka) names. Reading checks
    that exactly those keys are there and that null comes only where the field is nullable."""

    def __init__(self, msg):
        self.msg = msg
        self.lines = []
        self.seen = set()  # nested struct names, qualified where the codec emitter declared them

    def emit(self, qualified, fields):
        msg = self.msg
        live = [f for f in fields if not f.versions.disjoint(msg.lo, msg.hi)]
        out = self.lines.append
        out(f"extension {qualified}: JSONConvertible {{")
        out("    init(jsonValue: JSONValue, version: Int16) throws {")
        out("        self.init()")
        out(f"        {'var' if live else 'let'} object = try JSONObjectReader(jsonValue)")
        for f in live:
            nullable = f.nullable.condition(msg.lo, msg.hi) or "true"
            stmt = f'self.{f.swift_name} = try object.take("{f.name}", version: version, nullable: {nullable})'
            cond = f.versions.condition(msg.lo, msg.hi)
            out(f"        {stmt}" if cond is None else f"        if {cond} {{ {stmt} }}")
        out("        try object.finish()")
        out("    }")
        out("")
        out("    func jsonValue(version: Int16) -> JSONValue {")
        out(f"        {'var' if live else 'let'} object = JSONObjectWriter()")
        for f in live:
            stmt = f'object.put("{f.name}", self.{f.swift_name}, version: version)'
            cond = f.versions.condition(msg.lo, msg.hi)
            out(f"        {stmt}" if cond is None else f"        if {cond} {{ {stmt} }}")
        out("        return object.value")
        out("    }")
        out("}")
        # Nested structs in the order Emitter.emit_struct declares them (first use wins).
        for f in live:
            if f.is_struct and f.element not in self.seen:
                self.seen.add(f.element)
                out("")
                self.emit(f"{qualified}.{f.element}", f.children)


HEADER = """// Generated by tools/gen_messages.py from schema/{schema}. Do not edit.
// Regenerate with: python3 tools/gen_messages.py
"""


def generate():
    """Returns {output folder: {file name: text}}."""
    files = {}
    check_files = {}
    apis = {}
    for name in sorted(os.listdir(SCHEMA_DIR)):
        if not name.endswith(".schema"):
            continue
        path = os.path.join(SCHEMA_DIR, name)
        messages = parse(path)
        body = [HEADER.format(schema=name), "import NIOCore", ""]
        json_body = [HEADER.format(schema=name), "import KafkaProtocol", ""]
        for msg in messages:
            e = Emitter(msg)
            e.emit_struct(0, msg.name, msg.fields, True)
            body.extend(e.lines)
            body.append("")
            j = JSONEmitter(msg)
            j.emit(msg.name, msg.fields)
            json_body.extend(j.lines)
            json_body.append("")
            if msg.kind == "request":
                apis[msg.key] = (msg.name[: -len("Request")], msg.lo, msg.hi, None if msg.flexible.empty else msg.flexible.lo)
        files[name.replace(".schema", ".swift")] = "\n".join(body).rstrip() + "\n"
        check_files[name.replace(".schema", "+JSON.swift")] = "\n".join(json_body).rstrip() + "\n"
    lines = [HEADER.format(schema="*.schema"), "/// The APIs whose codecs are generated, with the versions they decode and encode."]
    lines.append("public enum ApiKey: Int16, Sendable, CaseIterable {")
    for key in sorted(apis):
        n = apis[key][0]
        lines.append(f"    case {n[0].lower() + n[1:]} = {key}")
    lines.append("")
    lines.append("    /// Versions the codecs handle.")
    lines.append("    public var versions: ClosedRange<Int16> {")
    lines.append("        switch self {")
    for key in sorted(apis):
        n, lo, hi, _ = apis[key]
        lines.append(f"        case .{n[0].lower() + n[1:]}: {lo}...{hi}")
    lines.append("        }")
    lines.append("    }")
    lines.append("")
    lines.append("    /// The first version that uses flexible (compact, tagged) encoding, if any.")
    lines.append("    public var firstFlexibleVersion: Int16? {")
    lines.append("        switch self {")
    for key in sorted(apis):
        n, _, _, flex = apis[key]
        lines.append(f"        case .{n[0].lower() + n[1:]}: {'nil' if flex is None else flex}")
    lines.append("        }")
    lines.append("    }")
    lines.append("")
    lines.append("    /// The request and response codecs of this API.")
    lines.append("    public var messageTypes: (request: any KafkaMessage.Type, response: any KafkaMessage.Type) {")
    lines.append("        switch self {")
    for key in sorted(apis):
        n = apis[key][0]
        lines.append(f"        case .{n[0].lower() + n[1:]}: ({n}Request.self, {n}Response.self)")
    lines.append("        }")
    lines.append("    }")
    lines.append("}")
    files["ApiKey.swift"] = "\n".join(lines) + "\n"
    return {OUT_DIR: files, CHECK_OUT_DIR: check_files}


def main():
    check = "--check" in sys.argv
    try:
        outputs = generate()
    except SchemaError as e:
        print(f"schema error: {e}", file=sys.stderr)
        return 2
    if check:
        stale = []
        for out_dir, files in outputs.items():
            existing = {n for n in os.listdir(out_dir) if n.endswith(".swift")} if os.path.isdir(out_dir) else set()
            stale += [n for n, text in files.items() if not os.path.exists(os.path.join(out_dir, n)) or open(os.path.join(out_dir, n)).read() != text]
            stale += sorted(existing - set(files))
        if stale:
            print("stale generated files (run python3 tools/gen_messages.py): " + ", ".join(sorted(stale)), file=sys.stderr)
            return 1
        print(f"generated code is current ({sum(map(len, outputs.values()))} files)")
        return 0
    for out_dir, files in outputs.items():
        existing = {n for n in os.listdir(out_dir) if n.endswith(".swift")} if os.path.isdir(out_dir) else set()
        os.makedirs(out_dir, exist_ok=True)
        for n in existing - set(files):
            os.remove(os.path.join(out_dir, n))
        for n, text in files.items():
            with open(os.path.join(out_dir, n), "w") as f:
                f.write(text)
        print(f"wrote {len(files)} files to {os.path.relpath(out_dir, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
