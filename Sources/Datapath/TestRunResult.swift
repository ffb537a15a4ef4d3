/// The outcome of running the program once on a frame (`BPF_PROG_TEST_RUN`): no packet leaves the host.
public struct TestRunResult: Hashable, Sendable {
    /// The tc verdict the program returned (`TC_ACT_OK` is 0).
    public var verdict: UInt32
    /// `skb->mark` after the run.
    public var mark: UInt32
    /// Average time per run in nanoseconds, as the kernel measured it (a figure, not a verdict).
    public var averageNanoseconds: UInt32

    public init(verdict: UInt32, mark: UInt32, averageNanoseconds: UInt32 = 0) {
        self.verdict = verdict
        self.mark = mark
        self.averageNanoseconds = averageNanoseconds
    }
}
