#if canImport(Glibc)
    import Glibc
    import Logging
    import Synchronization

    /// Watches a key file and reports each replacement as one `KeyFileEvent`.
    ///
    /// Uses inotify on the file's DIRECTORY (no polling), so it follows all three ways a key file is
    /// replaced: written in place, renamed over (atomic write), and the Kubernetes projected-volume
    /// swap (`keys -> ..data/keys`, where `..data_tmp` is renamed over `..data`). A burst of events is
    /// debounced into one report; an in-place write is read only after its close (or after
    /// `completionTimeout`); an optional random jitter spreads reports across a fleet. The current
    /// content is reported once at start. An outcome identical to the previous one is not repeated.
    ///
    /// The blocking wait runs on a dedicated thread, never on Swift's cooperative pool. `stop()` (or
    /// ending the iteration of `events`, or releasing the watcher) wakes that thread, which closes its
    /// descriptors, finishes `events` and exits; nothing ever waits for it.
    public final class KeyFileWatcher: Sendable {
        /// Debounce and jitter of the watcher: how long a file must be quiet before it is read.
        public struct Configuration: Sendable {
            /// Quiet time after the last relevant event before the file is read.
            public var debounce: Duration
            /// Upper bound of the random delay added before a report (zero: none).
            public var maximumJitter: Duration
            /// How long to wait for the close of an in-place write before reading anyway.
            public var completionTimeout: Duration

            public init(
                debounce: Duration = .milliseconds(100), maximumJitter: Duration = .zero,
                completionTimeout: Duration = .seconds(5)
            ) {
                self.debounce = debounce
                self.maximumJitter = maximumJitter
                self.completionTimeout = completionTimeout
            }
        }

        public let path: String
        /// The reports, starting with the file's current state. Iterate it from one task.
        public let events: AsyncStream<KeyFileEvent>

        private let control: KeyFileWatchControl
        private let thread: Mutex<pthread_t?>

        /// True when the last successful read found the file accessible by group or others (for metrics).
        public var insecurePermissions: Bool { control.insecurePermissions.load(ordering: .relaxed) }

        /// True once the watcher thread has left its loop (for tests and diagnostics).
        var threadExited: Bool { control.exited.load(ordering: .acquiring) }

        /// Starts watching `path`. Throws when its directory cannot be watched.
        public init(path: String, configuration: Configuration = .init(), logger: Logger? = nil) throws(KeyFileError) {
            let (directory, name) = Self.split(path)
            let inotify = try Inotify(directory: directory, file: path)
            let control = try KeyFileWatchControl(file: path)
            let (events, continuation) = AsyncStream.makeStream(of: KeyFileEvent.self, bufferingPolicy: .unbounded)
            let loop = KeyFileWatchLoop(
                path: path, name: name, inotify: inotify, control: control,
                continuation: continuation, configuration: configuration, logger: logger
            )
            var handle = pthread_t()
            let context = Unmanaged.passRetained(loop).toOpaque()
            let status = pthread_create(
                &handle, nil,
                { context in
                    let loop = Unmanaged<KeyFileWatchLoop>.fromOpaque(context!).takeRetainedValue()
                    loop.run()
                    return nil
                }, context)
            guard status == 0 else {
                Unmanaged<KeyFileWatchLoop>.fromOpaque(context).release()
                throw KeyFileError(
                    file: path, line: nil, field: .file, expected: "a watcher thread",
                    got: String(cString: strerror(status)))
            }
            self.path = path
            self.events = events
            self.control = control
            self.thread = Mutex(handle)
            continuation.onTermination = { [weak self] _ in self?.stop() }
        }

        deinit { stop() }

        /// Stops watching: wakes the thread, which closes its descriptors, finishes `events` and exits on its own.
        /// Idempotent, and it never waits: it is called from `events`' termination handler and from cancelled tasks,
        /// where joining the thread deadlocked (the thread's `finish()` needs the stream's lock that the cancelling
        /// task holds). `threadExited` tells when the thread is gone.
        public func stop() {
            guard
                let handle = thread.withLock({ thread -> pthread_t? in
                    defer { thread = nil }; return thread
                })
            else { return }
            control.signalStop()
            pthread_detach(handle)
        }

        /// (directory, entry name) of a path; a bare name lives in ".".
        static func split(_ path: String) -> (String, String) {
            guard let slash = path.lastIndex(of: "/") else { return (".", path) }
            let directory = slash == path.startIndex ? "/" : String(path[..<slash])
            return (directory, String(path[path.index(after: slash)...]))
        }
    }
#endif
