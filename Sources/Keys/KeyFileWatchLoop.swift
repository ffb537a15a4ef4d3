#if canImport(Glibc)
    import Glibc
    import Logging
    import Synchronization

    /// State shared by a `KeyFileWatcher` and its thread: the stop signal (a non-blocking pipe, closed
    /// when both are done with it) and the latest permission finding.
    final class KeyFileWatchControl: Sendable {
        /// Readable once a stop was signalled; the thread polls it next to inotify.
        let stopDescriptor: Int32
        private let signalDescriptor: Int32
        let insecurePermissions = Atomic<Bool>(false)
        /// Set by the thread as it leaves its loop.
        let exited = Atomic<Bool>(false)

        init(file: String) throws(KeyFileError) {
            var fds: [Int32] = [-1, -1]
            guard pipe(&fds) == 0 else {
                throw KeyFileError(
                    file: file, line: nil, field: .file, expected: "a pipe", got: String(cString: strerror(errno)))
            }
            for fd in fds {
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            }
            stopDescriptor = fds[0]
            signalDescriptor = fds[1]
        }

        deinit {
            close(stopDescriptor)
            close(signalDescriptor)
        }

        /// Wakes the thread and makes it exit.
        func signalStop() {
            var byte: UInt8 = 1
            _ = write(signalDescriptor, &byte, 1)
        }
    }

    /// The body of the watcher thread. Owned by that thread alone; everything it blocks on is a
    /// `poll` that the stop pipe interrupts.
    final class KeyFileWatchLoop {
        let path: String
        /// Entry names in the directory whose change means the key file may have changed: the file's
        /// own name, and `..data` (the symlink Kubernetes swaps when it updates a projected volume).
        let relevantNames: Set<String>
        let inotify: Inotify
        let control: KeyFileWatchControl
        let continuation: AsyncStream<KeyFileEvent>.Continuation
        let configuration: KeyFileWatcher.Configuration
        let logger: Logger?
        let parser = KeyFileParser()
        let clock = ContinuousClock()

        /// The last outcome reported; an identical outcome is not reported again.
        var lastEvent: KeyFileEvent?
        var lastInsecure = false
        var pending: PendingChange?

        /// A change seen but not reported yet.
        struct PendingChange {
            var first: ContinuousClock.Instant
            var last: ContinuousClock.Instant
            /// An in-place write was seen (create or modify) and its close has not been seen yet.
            var writeInProgress: Bool
            /// Set once the change is complete and quiet: report at this instant (after the jitter).
            var reportAt: ContinuousClock.Instant?
        }

        init(
            path: String, name: String, inotify: Inotify, control: KeyFileWatchControl,
            continuation: AsyncStream<KeyFileEvent>.Continuation,
            configuration: KeyFileWatcher.Configuration, logger: Logger?
        ) {
            self.path = path
            self.relevantNames = [name, "..data"]
            self.inotify = inotify
            self.control = control
            self.continuation = continuation
            self.configuration = configuration
            self.logger = logger
        }

        func run() {
            defer {
                control.exited.store(true, ordering: .releasing)
                continuation.finish()
            }
            report()
            var descriptors = [
                pollfd(fd: control.stopDescriptor, events: Int16(POLLIN), revents: 0),
                pollfd(fd: inotify.descriptor, events: Int16(POLLIN), revents: 0),
            ]
            while true {
                descriptors[0].revents = 0
                descriptors[1].revents = 0
                if poll(&descriptors, nfds_t(descriptors.count), timeoutMilliseconds()) < 0 {
                    if errno == EINTR { continue }
                    logger?.error(
                        "key file watcher: poll failed, stopping", metadata: ["file": "\(path)", "errno": "\(errno)"])
                    return
                }
                if descriptors[0].revents != 0 { return }
                if descriptors[1].revents != 0 {
                    for record in inotify.readRecords() {
                        guard handle(record) else { return }
                    }
                }
                advance()
            }
        }

        /// Folds one inotify record into the pending change. False when watching cannot go on.
        func handle(_ record: Inotify.Record) -> Bool {
            let mask = record.mask
            let now = clock.now
            if mask & UInt32(IN_Q_OVERFLOW) != 0 {
                note(at: now) { $0.writeInProgress = false }
                return true
            }
            if mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED) != 0 {
                let error = KeyFileError(
                    file: path, line: nil, field: .file,
                    expected: "its directory to stay in place", got: "the directory was removed or moved"
                )
                logger?.error("key file watcher stops", metadata: ["error": "\(error)"])
                continuation.yield(.error(error))
                return false
            }
            guard relevantNames.contains(record.name) else { return true }
            note(at: now) { change in
                if mask & UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE) != 0 {
                    change.writeInProgress = false
                } else if mask & UInt32(IN_MODIFY) != 0 {
                    change.writeInProgress = true
                } else if mask & UInt32(IN_CREATE) != 0 {
                    // open(O_CREAT) is followed by writes and a close; a new symlink is complete at once.
                    change.writeInProgress = Self.isRegularFile(path)
                }
            }
            return true
        }

        func note(at now: ContinuousClock.Instant, _ update: (inout PendingChange) -> Void) {
            var change = pending ?? PendingChange(first: now, last: now, writeInProgress: false, reportAt: nil)
            change.last = now
            change.reportAt = nil  // any new activity restarts the debounce
            update(&change)
            pending = change
        }

        /// Reports the pending change once it is quiet, complete and past its jitter.
        func advance() {
            guard var change = pending else { return }
            let now = clock.now
            if change.reportAt == nil {
                let quiet = now >= change.last + configuration.debounce
                let complete = !change.writeInProgress || now >= change.first + configuration.completionTimeout
                guard quiet && complete else { return }
                change.reportAt = now + Self.randomDuration(upTo: configuration.maximumJitter)
                pending = change
            }
            if let reportAt = change.reportAt, now >= reportAt {
                pending = nil
                report()
            }
        }

        /// Milliseconds until `advance` has something to do (-1: wait for an event).
        func timeoutMilliseconds() -> Int32 {
            guard let change = pending else { return -1 }
            let deadline: ContinuousClock.Instant
            if let reportAt = change.reportAt {
                deadline = reportAt
            } else if clock.now < change.last + configuration.debounce {
                deadline = change.last + configuration.debounce
            } else {
                deadline = change.first + configuration.completionTimeout
            }
            let remaining = clock.now.duration(to: deadline)
            guard remaining > .zero else { return 0 }
            let (seconds, attoseconds) = remaining.components
            let milliseconds = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
            return Int32(clamping: milliseconds)
        }

        /// Reads the file now and reports the outcome if it differs from the last one.
        func report() {
            let event: KeyFileEvent
            do {
                let file = try parser.load(path: path)
                control.insecurePermissions.store(file.insecurePermissions, ordering: .relaxed)
                if file.insecurePermissions && !lastInsecure {
                    logger?.warning(
                        "key file is accessible by group or others; make it mode 0600 or 0400",
                        metadata: ["file": "\(path)"])
                }
                lastInsecure = file.insecurePermissions
                event = .key(file.activeKey)
            } catch {
                event = .error(error)
            }
            guard event != lastEvent else { return }
            lastEvent = event
            switch event {
            case .key(let key):
                logger?.info(
                    "key file loaded",
                    metadata: ["file": "\(path)", "key": "\(key)", "fingerprint": "\(key.fingerprint)"])
            case .error(let error):
                logger?.warning("key file rejected", metadata: ["error": "\(error)"])
            }
            continuation.yield(event)
        }

        static func isRegularFile(_ path: String) -> Bool {
            var info = stat()
            return lstat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFREG
        }

        static func randomDuration(upTo maximum: Duration) -> Duration {
            guard maximum > .zero else { return .zero }
            let (seconds, attoseconds) = maximum.components
            let nanoseconds = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
            return .nanoseconds(Int64.random(in: 0...nanoseconds))
        }
    }
#endif
