import Metadata

extension Broker {
    /// One pass of Kafka's offset expiration (`offsets.retention.minutes`, every
    /// `offsets.retention.check.interval.ms`): deletes the committed offsets whose group's
    /// expiration condition has run out (`GroupCoordinatorStateMachine.offsetExpiry`), then
    /// drops an Empty group left without offsets. Returns how many offsets it deleted.
    ///
    /// Each row carries the time it expires from (its commit, `commitTimestampMs`). Kafka keeps
    /// a group's state timestamp in its log; here the coordinator holds groups in memory, so
    /// the pass moves that time forward on the offsets that must not expire yet: those of a
    /// group with members and of the topics a group is subscribed to (to now), and those of an
    /// Empty group (to when it became Empty). A group dropped from memory, or known only after a
    /// restart, then expires from that time, within one check interval of Kafka's. Deletes
    /// are conditional on the commit time, so an offset committed during the pass stays.
    @discardableResult
    public func expireOffsets(now: Int64 = Broker.wallClockMs()) async -> Int {
        let cutoff = now - config.offsetsRetentionMs
        var deleted = 0
        do {
            for group in try await metadata.groupsWithOffsets() {
                let offsets = try await metadata.fetchOffsets(group: group)
                let rule = groups.offsetExpiry(group)
                var expire: [(topic: String, partition: Int32)] = []
                var touchNow: [(topic: String, partition: Int32)] = []
                var touchSince: [(topic: String, partition: Int32)] = []
                var since: Int64 = 0
                for o in offsets {
                    let p = (topic: o.topic, partition: o.partition)
                    if o.commitTimestampMs <= 0 {
                        touchNow.append(p)  // written before commit times were kept: from now
                        continue
                    }
                    switch rule {
                    case .never:
                        touchNow.append(p)
                    case .all(let s):
                        since = s
                        if max(o.commitTimestampMs, s) <= cutoff { expire.append(p) } else if o.commitTimestampMs < s { touchSince.append(p) }
                    case .byCommitTime(let keep) where keep.contains(o.topic):
                        touchNow.append(p)
                    case .byCommitTime, nil:
                        if o.commitTimestampMs <= cutoff { expire.append(p) }
                    }
                }
                if !touchNow.isEmpty { try await metadata.touchOffsets(group: group, touchNow, at: now) }
                if !touchSince.isEmpty { try await metadata.touchOffsets(group: group, touchSince, at: since) }
                guard !expire.isEmpty else { continue }
                let n = try await metadata.expireOffsets(group: group, expire, committedBefore: cutoff + 1)
                deleted += n
                logger.info("expired committed offsets", metadata: ["group": "\(group)", "offsets": "\(n)"])
                if n == offsets.count && groups.dropIfEmpty(group) {
                    logger.info("group has no offsets left and no members: removed", metadata: ["group": "\(group)"])
                }
            }
        } catch {
            logger.warning("offset expiration pass failed", metadata: ["error": "\(error)"])
        }
        return deleted
    }
}
