import Broker
import NIOConcurrencyHelpers
import NIOCore
import Testing

/// `Answer`: a response frame handed to callbacks by whichever thread completes it.
@Suite struct AnswerTests {
    @Test func callbacksRunInOrderOnceWhetherAddedBeforeOrAfterTheFrame() {
        let answer = Answer()
        let seen = NIOLockedValueBox<[String]>([])
        answer.whenReady { b in seen.withLockedValue { $0.append("first \(b.readableBytes)") } }
        answer.whenReady { b in seen.withLockedValue { $0.append("second \(b.readableBytes)") } }
        #expect(seen.withLockedValue { $0 }.isEmpty)
        answer.succeed(ByteBuffer(bytes: [1, 2, 3]))
        answer.succeed(ByteBuffer(bytes: [1]))  // ignored: an answer completes once
        answer.whenReady { b in seen.withLockedValue { $0.append("late \(b.readableBytes)") } }
        #expect(seen.withLockedValue { $0 } == ["first 3", "second 3", "late 3"])
    }

    @Test func cancellingATaskAnswerCancelsItsWorkWhichStillAnswers() async {
        let answer = Answer.task {
            do {
                try await Task.sleep(for: .seconds(60))
                return ByteBuffer(string: "slept")
            } catch {
                return ByteBuffer(string: "cancelled")
            }
        }
        answer.cancel()
        #expect(String(buffer: await answer.value) == "cancelled")
    }
}
