#if canImport(Glibc)
    import Glibc
#endif

/// glibc malloc settings for a long-running agent (docs/benchmarks.md, "Memory").
///
/// A rotation or reconcile at thousands of peers allocates tens of thousands of short-lived objects on whichever
/// of the cooperative pool's and the XFRM queue's threads runs it. By default glibc gives each thread its own
/// arena and keeps freed pages, so resident memory ratchets up to several times the live heap. Two arenas for
/// the process and a trim after each burst keep it near the live heap. Looked up at run time (`malloc.h` is not
/// part of Swift's Glibc module); a C library without these symbols leaves things as they are.
public enum MemoryTuning {
    private static let M_ARENA_MAX: Int32 = -8

    /// Call once at start, before other threads allocate.
    public static func configure() {
        guard let symbol = dlsym(nil, "mallopt") else { return }
        _ = unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)(M_ARENA_MAX, 2)
    }

    /// Returns free heap pages to the kernel; after work that allocated in bulk (key loads, reconcile passes).
    public static func releaseFreeMemory() {
        guard let symbol = dlsym(nil, "malloc_trim") else { return }
        _ = unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)(0)
    }
}
