import KafkaProtocol
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ObjectStore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The file WAL (`wal = file://DIR`): produce is acked once its batches are appended to a
/// file and fdatasync'd, not once an object is in the bucket; objects are uploaded behind it.
///
/// Layout, under `DIR/<node>/`:
///
///     <brokerEpoch>-<seq>.wal   one segment per WAL object: the batches of object `seq`
///     fence-<brokerEpoch>       present once that broker epoch was taken over
///
/// A segment is a run of frames, one per group commit, each zero-padded to 4 KiB so that it
/// is written with O_DIRECT (the page cache copy cost more CPU than the rest of the write):
///
///     magic u32 | payload length u32 | crc u32 | payload | zeros
///     payload: (streamId i64 | stream epoch i64 | batch length u32 | batch)*
///
/// The frame's CRC-32C covers each entry's 20 header bytes and the first 21 bytes of its
/// batch (base offset, length, leader epoch, magic, CRC), in order; the rest of each batch is
/// covered by the batch's own CRC, checked when the segment is read. So every byte is checked
/// without a second CRC pass over the records on the produce path (about 4% of the broker's
/// CPU). Segments written before this format (magic "TWAL") have one CRC over the payload
/// and are still read.
///
/// A torn frame at the end of a segment (a crash mid-write) fails a CRC and ends the
/// segment; it was never acked. A segment is deleted once its object is committed. The next
/// segment is created ahead, empty (recovery deletes an empty one like any other).
///
/// Fencing mirrors the S3 WAL's: whoever takes over a broker's WAL (its next run, or the
/// controller after its lease expired) first creates the fence file of each earlier epoch,
/// then reads the segments. A broker checks its own fence file after each fdatasync and acks
/// nothing once it exists, so every frame it acked was on disk before the taker read it. With
/// brokers on several machines DIR must be shared storage whose metadata is not cached
/// (NFS: `lookupcache=none,actimeo=0`).
public final class FileWAL: Sendable {
    public static let frameMagic: UInt32 = 0x5457_4C32  // "TWL2"
    /// Frames whose CRC covers the whole payload.
    static let wholePayloadFrameMagic: UInt32 = 0x5457_414C  // "TWAL"
    /// Bytes of a batch before the part its own CRC covers (every batch is longer: its header
    /// alone is 61 bytes).
    static let batchUncovered = RecordBatchHeader.attributesOffset
    static let frameHeaderSize = 12
    static let entryHeaderSize = 20

    public let root: String
    let directory: String
    let fencePath: String
    let epoch: Int64
    /// The one WAL thread: appends and fdatasyncs run here, in order.
    private let thread: NIOThreadPool
    /// Segment creation ahead of need and segment deletion: each takes a journal commit of
    /// the file system (0.2-12 ms measured beside 200 MB/s of produce), and on the WAL thread
    /// every one held up a group commit, dozens of times a second.
    private let housekeeping: NIOThreadPool
    /// The next segment, created (and its name made durable) on the housekeeping thread.
    private let prepared = NIOLockedValueBox<(seq: UInt64, fd: Int32)?>(nil)
    /// What only the WAL thread touches: the open segment, and the aligned memory frames
    /// are built in (kept for the next frame).
    private struct Writer {
        var seq: UInt64 = 0
        var fd: Int32 = -1
        var memory: AlignedMemory?
        var direct = DirectWrites.openFlag != nil
        /// When the last group's write began.
        var lastStart: ContinuousClock.Instant?
    }
    private let writer = NIOLockedValueBox(Writer())

    /// TEST-ONLY (the crash simulation): called on the WAL thread before each file operation,
    /// with its name, the segment's path and a length: "walWrite" (the bytes about to be
    /// appended), "walSync" (the segment's length once synced), "walDelete". Throwing fails
    /// the operation as a disk error would.
    public typealias Hook = @Sendable (_ operation: String, _ path: String, _ length: Int) throws -> Void
    let hook: Hook?
    let mutations: TestMutations
    /// `wal.sync.min.interval.us`: the least time from one group's write to the next.
    let minSyncInterval: Duration

    /// Opens `root/<node>/` for broker epoch `epoch` of `node`.
    public init(root: String, node: Int32, epoch: Int64, minSyncInterval: Duration = .zero, hook: Hook? = nil,
                testMutations: TestMutations = []) throws {
        self.minSyncInterval = minSyncInterval
        self.hook = hook
        self.mutations = testMutations
        self.root = root.hasSuffix("/") ? String(root.dropLast()) : root
        directory = Self.directory(root: self.root, node: node)
        fencePath = Self.fencePath(directory, epoch: epoch)
        self.epoch = epoch
        try LocalDirectoryObjectStore.makeDirectories(directory)
        thread = NIOThreadPool(numberOfThreads: 1)
        thread.start()
        housekeeping = NIOThreadPool(numberOfThreads: 1)
        housekeeping.start()
    }

    deinit {
        let fd = writer.withLockedValue { $0.fd }
        if fd >= 0 { close(fd) }
        if let p = prepared.withLockedValue({ $0 }) { close(p.fd) }
        thread.shutdownGracefully { _ in }
        housekeeping.shutdownGracefully { _ in }
    }

    static func directory(root: String, node: Int32) -> String { "\(root)/\(node)" }
    static func fencePath(_ directory: String, epoch: Int64) -> String { "\(directory)/fence-\(StreamEngine.pad(epoch))" }
    static func segmentName(epoch: Int64, seq: UInt64) -> String {
        let s = String(seq)
        return "\(StreamEngine.pad(epoch))-\(String(repeating: "0", count: max(0, 20 - s.count)))\(s).wal"
    }

    // MARK: frames

    /// A frame's size, padded: frames start at multiples of the alignment, so that they can be
    /// written with O_DIRECT, past the page cache.
    static func frameSize(_ batches: [ObjectFormat.Batch]) -> Int {
        let raw = batches.reduce(frameHeaderSize) { $0 + entryHeaderSize + $1.bytes.readableBytes }
        return (raw + DirectWrites.alignment - 1) / DirectWrites.alignment * DirectWrites.alignment
    }

    /// Writes the frame of `batches`, zero-padded to `frameSize`, at the start of `out`.
    static func encodeFrame(_ batches: [ObjectFormat.Batch], into out: UnsafeMutableRawBufferPointer) {
        var at = frameHeaderSize
        func put<T: FixedWidthInteger>(_ v: T) {
            withUnsafeBytes(of: v.bigEndian) { out.baseAddress!.advanced(by: at).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            at += MemoryLayout<T>.size
        }
        var crc: UInt32 = 0
        for b in batches {
            let entry = at
            put(b.streamId)
            put(b.epoch)
            put(UInt32(b.bytes.readableBytes))
            b.bytes.withUnsafeReadableBytes { out.baseAddress!.advanced(by: at).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            at += b.bytes.readableBytes
            crc = CRC32C.extend(crc, UnsafeRawBufferPointer(rebasing: out[entry..<entry + entryHeaderSize + batchUncovered]))
        }
        let payload = at - frameHeaderSize
        out.baseAddress!.advanced(by: at).initializeMemory(as: UInt8.self, repeating: 0, count: frameSize(batches) - at)
        at = 0
        put(frameMagic)
        put(UInt32(payload))
        put(crc)
    }

    /// The frame of `batches` as bytes (what a segment holds for one group commit).
    public static func frame(_ batches: [ObjectFormat.Batch]) -> ByteBuffer {
        let size = frameSize(batches)
        var out = ByteBufferAllocator().buffer(capacity: size)
        out.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { encodeFrame(batches, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<size])); return size }
        return out
    }

    // MARK: writing

    /// Runs `work` on the WAL thread, after the work submitted before it; never once the WAL
    /// is closed.
    public func submit(_ work: @escaping @Sendable () -> Void) {
        thread.submit { state in
            guard case .active = state else { return }
            work()
        }
    }

    /// Stops the WAL thread: work submitted after this is dropped. (A process that ends does
    /// not need it; the crash simulation ends many brokers in one process.)
    public func stop() {
        thread.shutdownGracefully { _ in }
        housekeeping.shutdownGracefully { _ in }
    }

    /// On the WAL thread: appends one group of batches to segment `seq` and makes it durable.
    /// Returns false when this broker epoch is fenced (the group may be on disk but must not be
    /// acked). Segments are written in increasing `seq`; a new one closes the one before.
    public func append(_ batches: [ObjectFormat.Batch], segment seq: UInt64) throws -> Bool {
        try writer.withLockedValue { w in
            w.lastStart = .now
            try openSegment(seq, &w)
            let size = Self.frameSize(batches)
            if (w.memory?.capacity ?? 0) < size {
                w.memory = AlignedMemory(capacity: ((size + (1 << 20) - 1) >> 20) << 20)
            }
            let memory = w.memory!
            Self.encodeFrame(batches, into: UnsafeMutableRawBufferPointer(start: memory.pointer, count: size))
            try hook?("walWrite", segmentPath(seq), size)
            try LocalDirectoryObjectStore.writeAll(w.fd, UnsafeRawBufferPointer(start: memory.pointer, count: size), path: segmentPath(seq))
            // Keep the memory for the next frame unless one burst made it far bigger than usual.
            if memory.capacity > 64 << 20 { w.memory = nil }
            if mutations.contains(.skipWALSync) { return }
            if let hook { try hook("walSync", segmentPath(seq), Int(lseek(w.fd, 0, SEEK_END))) }
            guard fdatasync(w.fd) == 0 else { throw LocalDirectoryObjectStore.posixError("fdatasync \(segmentPath(seq))") }
        }
        return access(fencePath, F_OK) != 0
    }

    /// On the WAL thread, before the next group is taken: waits until `minSyncInterval` has
    /// passed since the last group's write began, so that what arrives meanwhile joins the
    /// group. Each group costs the thread about the same (a write, a flush, two waits for the
    /// device) however small it is. Returns how long it waited.
    @discardableResult
    public func waitForNextGroup() -> Duration {
        guard minSyncInterval > .zero, let last = writer.withLockedValue({ $0.lastStart }) else { return .zero }
        let left = last + minSyncInterval - .now
        guard left > .zero else { return .zero }
        let (seconds, attoseconds) = left.components
        var ts = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
        nanosleep(&ts, nil)
        return left
    }

    private func segmentPath(_ seq: UInt64) -> String { "\(directory)/\(Self.segmentName(epoch: epoch, seq: seq))" }

    private func openSegment(_ seq: UInt64, _ w: inout Writer) throws {
        if w.fd >= 0 && w.seq == seq { return }
        var fd: Int32 = -1
        if let p = prepared.withLockedValue({ p in defer { p = nil }; return p }) {
            // One prepared for another seq is empty, or is a segment this thread opened
            // itself while it was being prepared: close it, never delete it. (An empty one
            // left behind is deleted at the next recovery.)
            if p.seq == seq { fd = p.fd } else { close(p.fd) }
        }
        if fd < 0 { fd = try Self.createSegment(segmentPath(seq), in: directory, direct: &w.direct) }
        if w.fd >= 0 { close(w.fd) }
        w.fd = fd
        w.seq = seq
        // Segments follow WAL objects, which are numbered one after another.
        let next = seq + 1
        let path = segmentPath(next)
        let direct = w.direct
        housekeeping.submit { state in
            var d = direct
            guard case .active = state, let fd = try? Self.createSegment(path, in: self.directory, direct: &d) else { return }
            let replaced = self.prepared.withLockedValue { p in defer { p = (next, fd) }; return p }
            if let replaced { close(replaced.fd) }
        }
    }

    /// Creates (or opens) a segment for appending, and makes its name durable: the name must
    /// survive a crash before the first frame in it is acked. `direct` turns false where
    /// O_DIRECT is refused (tmpfs).
    private static func createSegment(_ path: String, in directory: String, direct: inout Bool) throws -> Int32 {
        let flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC
        var fd: Int32 = -1
        if direct, let flag = DirectWrites.openFlag {
            fd = Glibc.open(path, flags | flag, 0o644)
            if fd < 0 && errno == EINVAL { direct = false }
        }
        if fd < 0 { fd = Glibc.open(path, flags, 0o644) }
        guard fd >= 0 else { throw LocalDirectoryObjectStore.posixError("create \(path)") }
        do {
            try LocalDirectoryObjectStore.syncDirectory(directory)
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    /// Once the deletions asked for so far are done, deletes the segment created ahead if no
    /// frame went into it: a broker that shuts down cleanly leaves no segment behind.
    public func settle() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            housekeeping.submit { _ in
                self.writer.withLockedValue { w in
                    if let p = self.prepared.withLockedValue({ p in defer { p = nil }; return p }) {
                        close(p.fd)
                        // Newer than the open segment: the WAL thread never opened it.
                        if p.seq > w.seq { unlink(self.segmentPath(p.seq)) }
                    }
                }
                c.resume()
            }
        }
    }

    /// Deletes the segment of WAL object `seq` (its object is committed), off the WAL thread.
    public func remove(segment seq: UInt64) {
        let path = segmentPath(seq)
        housekeeping.submit { state in
            guard case .active = state else { return }
            if let hook = self.hook {
                do { try hook("walDelete", path, 0) } catch { return }
            }
            self.writer.withLockedValue { w in
                if w.fd >= 0 && w.seq == seq {
                    close(w.fd)
                    w.fd = -1
                }
            }
            unlink(path)
        }
    }

    // MARK: recovery

    /// A segment found on disk.
    public struct Segment: Sendable, Equatable {
        public var epoch: Int64
        public var seq: UInt64
        public var path: String
    }

    /// The segments of `node` with a broker epoch below `epochsBelow`, in WAL order.
    public static func segments(root: String, node: Int32, epochsBelow: Int64) -> [Segment] {
        let dir = directory(root: root, node: node)
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var out: [Segment] = []
        while let e = readdir(d) {
            let name = withUnsafePointer(to: e.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            guard name.hasSuffix(".wal") else { continue }
            let parts = name.dropLast(4).split(separator: "-")
            guard parts.count == 2, let epoch = Int64(parts[0]), let seq = UInt64(parts[1]), epoch < epochsBelow else { continue }
            out.append(Segment(epoch: epoch, seq: seq, path: "\(dir)/\(name)"))
        }
        return out.sorted { ($0.epoch, $0.seq) < ($1.epoch, $1.seq) }
    }

    /// Whether this process can read `node`'s WAL under `root`.
    public static func readable(root: String, node: Int32) -> Bool {
        access(directory(root: root, node: node), R_OK | W_OK | X_OK) == 0
    }

    /// Deletes a segment found at recovery.
    public static func delete(_ segment: Segment) { unlink(segment.path) }

    /// Creates the fence files of `node`'s epochs in `epochs` (existing ones are fine), and
    /// makes them durable before anything is read.
    public static func fence(root: String, node: Int32, epochs: [Int64]) throws {
        let dir = directory(root: root, node: node)
        try LocalDirectoryObjectStore.makeDirectories(dir)
        for e in epochs where e > 0 {
            let path = fencePath(dir, epoch: e)
            let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw LocalDirectoryObjectStore.posixError("create \(path)") }
            close(fd)
        }
        try LocalDirectoryObjectStore.syncDirectory(dir)
    }

    /// The batches of a segment, in the order they were appended: every whole frame up to the
    /// first torn or corrupt one.
    public static func read(_ segment: Segment) throws -> [ObjectFormat.Batch] {
        let fd = Glibc.open(segment.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LocalDirectoryObjectStore.posixError("open \(segment.path)") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw LocalDirectoryObjectStore.posixError("stat \(segment.path)") }
        var buffer = ByteBufferAllocator().buffer(capacity: Int(st.st_size))
        let n = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: Int(st.st_size)) { raw in
            var done = 0
            while done < Int(st.st_size) {
                let r = Glibc.read(fd, raw.baseAddress! + done, Int(st.st_size) - done)
                if r < 0 && errno == EINTR { continue }
                if r <= 0 { break }
                done += r
            }
            return done
        }
        _ = n
        return parse(buffer)
    }

    /// The batches in a segment's bytes, up to the first torn or corrupt frame.
    public static func parse(_ bytes: ByteBuffer) -> [ObjectFormat.Batch] {
        var b = bytes
        var out: [ObjectFormat.Batch] = []
        while b.readableBytes >= frameHeaderSize {
            guard let magic = b.getInteger(at: b.readerIndex, as: UInt32.self), magic == frameMagic || magic == wholePayloadFrameMagic,
                  let length = b.getInteger(at: b.readerIndex + 4, as: UInt32.self).map(Int.init),
                  let crc = b.getInteger(at: b.readerIndex + 8, as: UInt32.self),
                  b.readableBytes >= frameHeaderSize + length else { break }
            guard var payload = b.getSlice(at: b.readerIndex + frameHeaderSize, length: length) else { break }
            if magic == wholePayloadFrameMagic { guard CRC32C.checksum(payload) == crc else { break } }
            var batches: [ObjectFormat.Batch] = []
            var entriesCRC: UInt32 = 0
            while payload.readableBytes > 0 {
                let entry = payload  // the entry's bytes still readable, for the frame's CRC
                guard let streamId = payload.readInteger(as: Int64.self), let epoch = payload.readInteger(as: Int64.self),
                      let size = payload.readInteger(as: UInt32.self), let batch = payload.readSlice(length: Int(size)),
                      let header = RecordBatchHeader(peeking: batch), header.totalSize == batch.readableBytes else {
                    return out  // a frame that does not parse (torn, or its CRC matched by chance): stop
                }
                if magic == frameMagic {
                    guard RecordBatch.checksum(batch, header: header) == header.crc else { return out }
                    entriesCRC = entry.withUnsafeReadableBytes { CRC32C.extend(entriesCRC, UnsafeRawBufferPointer(rebasing: $0[0..<entryHeaderSize + batchUncovered])) }
                }
                batches.append(ObjectFormat.Batch(streamId: streamId, epoch: epoch, header: header, bytes: batch))
            }
            if magic == frameMagic { guard entriesCRC == crc else { break } }
            out += batches
            let padded = (frameHeaderSize + length + DirectWrites.alignment - 1) / DirectWrites.alignment * DirectWrites.alignment
            b.moveReaderIndex(forwardBy: min(padded, b.readableBytes))
        }
        return out
    }
}
