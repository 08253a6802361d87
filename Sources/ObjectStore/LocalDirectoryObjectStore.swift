import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A local directory as a bucket: the embedded default.
///
/// A put writes a temp file, fsyncs it, `link()`s it into place (which fails if the name
/// exists: the local If-None-Match) and fsyncs the directory, so an acked object survives a
/// power cut. All file I/O runs on a thread pool, never on an event loop.
public final class LocalDirectoryObjectStore: ObjectStore {
    public let root: String
    private let pool: NIOThreadPool

    public init(root: String, threadPool: NIOThreadPool) throws {
        self.root = root.hasSuffix("/") ? String(root.dropLast()) : root
        self.pool = threadPool
        try Self.makeDirectories(self.root)
    }

    private func path(_ key: String) throws -> String {
        guard !key.isEmpty, !key.hasPrefix("/"), !key.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) else {
            throw ObjectStoreError(.failed, "invalid object key \(key)")
        }
        return root + "/" + key
    }

    public func put(_ key: String, _ body: ByteBuffer, ifNoneMatch: Bool) async throws {
        let target = try path(key)
        try await pool.runIfActive {
            let dir = String(target[..<target.lastIndex(of: "/")!])
            try Self.makeDirectories(dir)
            let tmp = "\(dir)/.tmp-\(UInt64.random(in: 0...UInt64.max))"
            let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw Self.posixError("create \(tmp)") }
            var ok = false
            defer {
                close(fd)
                if !ok { unlink(tmp) }
            }
            try body.withUnsafeReadableBytes { raw in
                var done = 0
                while done < raw.count {
                    let n = write(fd, raw.baseAddress! + done, raw.count - done)
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw Self.posixError("write \(tmp)")
                    }
                    done += n
                }
            }
            guard fdatasync(fd) == 0 else { throw Self.posixError("fdatasync \(tmp)") }
            if ifNoneMatch {
                if link(tmp, target) != 0 {
                    if errno == EEXIST { throw ObjectStoreError(.alreadyExists, key) }
                    throw Self.posixError("link \(target)")
                }
                unlink(tmp)
            } else {
                guard rename(tmp, target) == 0 else { throw Self.posixError("rename \(target)") }
            }
            ok = true
            try Self.syncDirectory(dir)
        }
    }

    public func get(_ key: String, range: Range<Int>?) async throws -> ByteBuffer {
        let target = try path(key)
        return try await pool.runIfActive {
            let fd = open(target, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                if errno == ENOENT { throw ObjectStoreError(.notFound, key) }
                throw Self.posixError("open \(target)")
            }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw Self.posixError("stat \(target)") }
            let size = Int(st.st_size)
            let r = range ?? 0..<size
            guard r.lowerBound >= 0, r.lowerBound <= size, r.upperBound >= r.lowerBound else {
                throw ObjectStoreError(.invalidRange, "\(key) \(r) of \(size)")
            }
            let upper = min(r.upperBound, size)  // S3 clips a range that runs past the end
            var buffer = ByteBufferAllocator().buffer(capacity: upper - r.lowerBound)
            try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: upper - r.lowerBound) { raw in
                var done = 0
                while done < upper - r.lowerBound {
                    let n = pread(fd, raw.baseAddress! + done, upper - r.lowerBound - done, off_t(r.lowerBound + done))
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw Self.posixError("read \(target)")
                    }
                    if n == 0 { break }
                    done += n
                }
                return done
            }
            return buffer
        }
    }

    public func head(_ key: String) async throws -> ObjectInfo? {
        let target = try path(key)
        return try await pool.runIfActive {
            var st = stat()
            if stat(target, &st) != 0 {
                if errno == ENOENT || errno == ENOTDIR { return nil }
                throw Self.posixError("stat \(target)")
            }
            return ObjectInfo(key: key, size: Int(st.st_size))
        }
    }

    public func list(prefix: String) async throws -> [ObjectInfo] {
        let root = self.root
        return try await pool.runIfActive {
            // Walk from the deepest directory the prefix names.
            let dirPart = prefix.contains("/") ? String(prefix[..<prefix.lastIndex(of: "/")!]) : ""
            var out: [ObjectInfo] = []
            Self.walk(root: root, relative: dirPart, into: &out)
            return out.filter { $0.key.hasPrefix(prefix) }.sorted { $0.key < $1.key }
        }
    }

    public func delete(_ keys: [String]) async throws {
        let paths = try keys.map { try path($0) }
        try await pool.runIfActive {
            for p in paths where unlink(p) != 0 && errno != ENOENT {
                throw Self.posixError("unlink \(p)")
            }
        }
    }

    private static func walk(root: String, relative: String, into out: inout [ObjectInfo]) {
        let dirPath = relative.isEmpty ? root : root + "/" + relative
        guard let dir = opendir(dirPath) else { return }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name == "." || name == ".." || name.hasPrefix(".tmp-") { continue }
            let rel = relative.isEmpty ? name : relative + "/" + name
            var st = stat()
            guard stat(root + "/" + rel, &st) == 0 else { continue }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                walk(root: root, relative: rel, into: &out)
            } else {
                out.append(ObjectInfo(key: rel, size: Int(st.st_size)))
            }
        }
    }

    static func makeDirectories(_ path: String) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw posixError("mkdir \(current)")
            }
        }
    }

    private static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw posixError("open \(path)") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw posixError("fsync \(path)") }
    }

    private static func posixError(_ what: String) -> ObjectStoreError {
        let code = errno
        let text = String(cString: strerror(code))
        return ObjectStoreError(code == ENOSPC || code == EIO ? .unavailable : .failed, "\(what): \(text)")
    }
}
