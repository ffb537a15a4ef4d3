/// The outcome of running the program once on a frame (`BPF_PROG_TEST_RUN`): no packet leaves the host.
public struct TestRunResult: Hashable, Sendable {
    /// The tc verdict the program returned (`TC_ACT_OK` is 0).
    public var verdict: UInt32
    /// `skb->mark` after the run.
    public var mark: UInt32

    public init(verdict: UInt32, mark: UInt32) {
        self.verdict = verdict
        self.mark = mark
    }
}
