import NIOConcurrencyHelpers
import NIOCore

/// LRU cache of object data blocks read back for catch-up fetches, bounded in bytes.
///
/// Blocks are copied into right-sized buffers before they are cached, so a cached block never
/// pins a larger read buffer.
public final class BlockCache: Sendable {
    private struct Key: Hashable {
        var object: String
        var position: Int
    }

    private struct State {
        var blocks: [Key: (buffer: ByteBuffer, tick: UInt64)] = [:]
        var bytes = 0
        var tick: UInt64 = 0
        var hits = 0
        var misses = 0
    }

    private let state = NIOLockedValueBox(State())
    public let capacity: Int

    public init(capacity: Int) { self.capacity = capacity }

    public func get(object: String, position: Int) -> ByteBuffer? {
        state.withLockedValue { s in
            let k = Key(object: object, position: position)
            guard var e = s.blocks[k] else {
                s.misses += 1
                return nil
            }
            s.hits += 1
            s.tick += 1
            e.tick = s.tick
            s.blocks[k] = e
            return e.buffer
        }
    }

    public func put(object: String, position: Int, block: ByteBuffer) {
        guard block.readableBytes <= capacity else { return }
        state.withLockedValue { s in
            s.tick += 1
            let k = Key(object: object, position: position)
            if let old = s.blocks[k] { s.bytes -= old.buffer.readableBytes }
            s.blocks[k] = (block, s.tick)
            s.bytes += block.readableBytes
            while s.bytes > capacity, let victim = s.blocks.min(by: { $0.value.tick < $1.value.tick }) {
                s.bytes -= victim.value.buffer.readableBytes
                s.blocks[victim.key] = nil
            }
        }
    }

    public var stats: (bytes: Int, hits: Int, misses: Int) { state.withLockedValue { ($0.bytes, $0.hits, $0.misses) } }
}
