import NIOCore

/// An event loop as a task executor: a connection's task runs on its channel's loop, so
/// each frame the channel reads reaches the task, and the task's writes reach the channel,
/// without a hop to another thread and back.
final class EventLoopTaskExecutor: TaskExecutor {
    let loop: any EventLoop

    init(_ loop: any EventLoop) {
        self.loop = loop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        loop.execute { job.runSynchronously(on: executor) }
    }
}
