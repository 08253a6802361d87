import NIOConcurrencyHelpers
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
///
/// Bodies of `directWriteMinimumBytes` and more are written with O_DIRECT, from a copy in
/// reused aligned memory, past the page cache: on the 2-core VMs Tern is measured on, the
/// kernel's copy into the page cache cost about 2.7 CPU seconds per GB (5 GB by `dd
/// conv=fdatasync`: 14 s of system time; with `oflag=direct`: 0.8 s), more than all of the
/// broker's own work. Where the file system refuses O_DIRECT (tmpfs), writes are buffered.
public final class LocalDirectoryObjectStore: ObjectStore {
    public let root: String
    private let pool: NIOThreadPool
    public static let directWriteMinimumBytes = 1 << 20
    private let direct: DirectWrites

    /// - Parameter directWriteBytes: the size of each O_DIRECT write. Large writes make the
    ///   most of the disk when objects are the WAL (the embedded default: 2 MiB gave 15% more
    ///   produce throughput than 256 KiB); small ones when a file WAL shares the disk, whose
    ///   fdatasyncs wait behind every write queued before them (bench/file_wal.py: p99 at 50%
    ///   load 41-46 ms with 2 MiB writes, 21-29 ms with 256 KiB, one run 55).
    public init(root: String, threadPool: NIOThreadPool, directWriteBytes: Int = DirectWrites.defaultChunkBytes) throws {
        self.root = root.hasSuffix("/") ? String(root.dropLast()) : root
        self.pool = threadPool
        self.direct = DirectWrites(chunkBytes: directWriteBytes)
        try Self.makeDirectories(self.root)
    }

    private func path(_ key: String) throws -> String {
        guard !key.isEmpty, !key.hasPrefix("/"), !key.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) else {
            throw ObjectStoreError(.failed, "invalid object key \(key)")
        }
        return root + "/" + key
    }

    public func put(_ key: String, _ body: ObjectBody, ifNoneMatch: Bool) async throws {
        let target = try path(key)
        let direct = self.direct
        try await pool.runIfActive {
            let dir = String(target[..<target.lastIndex(of: "/")!])
            try Self.makeDirectories(dir)
            let tmp = "\(dir)/.tmp-\(UInt64.random(in: 0...UInt64.max))"
            var fd: Int32 = -1
            let directFlag = body.readableBytes >= Self.directWriteMinimumBytes ? direct.flag : nil
            if let directFlag {
                fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | directFlag, 0o644)
                if fd < 0 && errno == EINVAL { direct.refused() }  // not on this file system
            }
            let isDirect = fd >= 0
            if !isDirect { fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) }
            guard fd >= 0 else { throw Self.posixError("create \(tmp)") }
            var ok = false
            defer {
                close(fd)
                if !ok { unlink(tmp) }
            }
            if isDirect {
                try direct.write(body, to: fd, path: tmp)
            } else {
                try body.withEachPart { raw in try Self.writeAll(fd, raw, path: tmp) }
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

    public static func writeAll(_ fd: Int32, _ raw: UnsafeRawBufferPointer, path: String) throws {
        var done = 0
        while done < raw.count {
            let n = write(fd, raw.baseAddress! + done, raw.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw posixError("write \(path)")
            }
            done += n
        }
    }

    public func get(_ key: String, range: Range<Int>?) async throws -> ByteBuffer {
        try await read(key, range: range, pieceBytes: nil).first ?? ByteBuffer()
    }

    public func get(_ key: String, range: Range<Int>?, pieceBytes: Int) async throws -> [ByteBuffer] {
        try await read(key, range: range, pieceBytes: max(1, pieceBytes))
    }

    /// The bytes read straight into buffers of `pieceBytes` (none empty), or into one buffer.
    private func read(_ key: String, range: Range<Int>?, pieceBytes: Int?) async throws -> [ByteBuffer] {
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
            let step = pieceBytes ?? max(1, upper - r.lowerBound)
            var pieces: [ByteBuffer] = []
            var at = r.lowerBound
            repeat {
                let want = min(step, upper - at)
                var buffer = ByteBufferAllocator().buffer(capacity: want)
                let got = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: want) { raw in
                    var done = 0
                    while done < want {
                        let n = pread(fd, raw.baseAddress! + done, want - done, off_t(at + done))
                        if n < 0 {
                            if errno == EINTR { continue }
                            throw Self.posixError("read \(target)")
                        }
                        if n == 0 { break }
                        done += n
                    }
                    return done
                }
                if got > 0 || pieceBytes == nil { pieces.append(buffer) }
                at += got
                if got < want { break }  // the file is shorter than it was
            } while at < upper
            return pieces
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

    public static func makeDirectories(_ path: String) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw posixError("mkdir \(current)")
            }
        }
    }

    public static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw posixError("open \(path)") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw posixError("fsync \(path)") }
    }

    public static func posixError(_ what: String) -> ObjectStoreError {
        let code = errno
        let text = String(cString: strerror(code))
        return ObjectStoreError(code == ENOSPC || code == EIO ? .unavailable : .failed, "\(what): \(text)")
    }
}

/// O_DIRECT writes: the body is copied, a chunk at a time, into aligned memory of one size
/// (kept for the next write, so no write pays page faults for fresh memory), the last chunk
/// padded to the alignment, and the file cut back to the body's length.
public final class DirectWrites: Sendable {
    public static let alignment = 4096
    public static let defaultChunkBytes = 2 << 20
    /// Bytes per write() (a multiple of `alignment`).
    let chunkBytes: Int
    /// The open flag, per architecture (Glibc does not export O_DIRECT to Swift).
    #if os(Linux) && arch(x86_64)
    public static let openFlag: Int32? = 0o40000
    #elseif os(Linux) && arch(arm64)
    public static let openFlag: Int32? = 0o200000
    #else
    public static let openFlag: Int32? = nil
    #endif

    private let supported = NIOLockedValueBox(DirectWrites.openFlag != nil)
    private let chunks = ReusePool<AlignedMemory>(keep: 4)

    init(chunkBytes: Int) {
        self.chunkBytes = max(Self.alignment, chunkBytes / Self.alignment * Self.alignment)
    }

    /// The flag to open with, or nil once the file system refused it.
    var flag: Int32? { supported.withLockedValue { $0 } ? Self.openFlag : nil }

    func refused() { supported.withLockedValue { $0 = false } }

    func write(_ body: ObjectBody, to fd: Int32, path: String) throws {
        let memory = chunks.take() ?? AlignedMemory(capacity: chunkBytes)
        defer { chunks.give(memory) }
        var filled = 0
        func writeChunk() throws {
            let padded = (filled + Self.alignment - 1) / Self.alignment * Self.alignment
            (memory.pointer + filled).initializeMemory(as: UInt8.self, repeating: 0, count: padded - filled)
            try LocalDirectoryObjectStore.writeAll(fd, UnsafeRawBufferPointer(start: memory.pointer, count: padded), path: path)
            filled = 0
        }
        try body.withEachPart { raw in
            var taken = 0
            while taken < raw.count {
                let n = min(chunkBytes - filled, raw.count - taken)
                (memory.pointer + filled).copyMemory(from: raw.baseAddress! + taken, byteCount: n)
                filled += n
                taken += n
                if filled == chunkBytes { try writeChunk() }
            }
        }
        if filled > 0 { try writeChunk() }
        if body.readableBytes % Self.alignment != 0 {
            guard ftruncate(fd, off_t(body.readableBytes)) == 0 else { throw LocalDirectoryObjectStore.posixError("ftruncate \(path)") }
        }
    }
}

/// Page-aligned memory, freed with its owner.
public final class AlignedMemory: @unchecked Sendable {
    public let pointer: UnsafeMutableRawPointer
    public let capacity: Int

    public init(capacity: Int) {
        self.capacity = capacity
        pointer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: DirectWrites.alignment)
    }

    deinit { pointer.deallocate() }
}
