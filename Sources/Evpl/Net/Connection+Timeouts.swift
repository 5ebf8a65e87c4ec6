extension Connection {
    /// Ends the handshake phase: the handshake timeout no longer applies,
    /// only the idle one. For protocols whose handshake is more than the
    /// first message (see ``ConnectionTimeouts/handshakeEndsWithFirstMessage``).
    /// Calling it again is harmless.
    public func endHandshake() {
        checkThread()
        guard !handshakeEnded else { return }
        handshakeEnded = true
        if timeouts.handshake != nil && state != .closed { loop.deadlines.update(self) }
    }

    /// Gives the message being read now `limit` to arrive whole, from this
    /// moment; `nil` clears the deadline. Past it the connection ends with
    /// ``EvplError/Code/timedOut`` (counted in
    /// ``EventLoop/Statistics/messageTimeouts``).
    ///
    /// For protocols whose peers could send a message slowly enough to
    /// dodge the idle timeout: a byte every few seconds keeps a connection
    /// active, but not its message on time. An HTTP server sets one when a
    /// request's head starts and another while its body arrives. A deadline
    /// later than the one the wheel already waits for, or none, is only
    /// stored (the wheel places the connection anew when it comes up); an
    /// earlier one moves it in the wheel. No system call either way.
    public func setMessageDeadline(after limit: Duration?) {
        checkThread()
        guard state != .closed else { return }
        if let limit {
            if limit != messageLimit || messageLimitNanoseconds == 0 {
                guard let nanoseconds = limit.wholeNanoseconds else {
                    setMessageDeadline(after: nil)
                    return
                }
                messageLimit = limit
                messageLimitNanoseconds = max(nanoseconds, 1)
            }
            let deadline = MonotonicClock.nanoseconds() &+ messageLimitNanoseconds
            messageDeadline = deadline
            // The wheel looks at the connection before this deadline and places it anew then.
            if deadlineSlot >= 0 && deadlineTick &* ConnectionDeadlines.tick <= deadline { return }
        } else {
            guard messageDeadline != 0 else { return }
            messageDeadline = 0
            // A later deadline, or none: the wheel finds out when it looks.
            if deadlineSlot >= 0 { return }
        }
        loop.deadlines.update(self)
    }

    /// Marks the connection active now (the loop's clock of this
    /// iteration): a byte arrived or went out.
    @inline(__always)
    func noteActivity() {
        lastActivity = loop.timersCheckedAt
    }

    /// When the connection times out unless something happens first;
    /// `nil` without a limit that applies.
    var nextDeadline: UInt64? {
        var deadline: UInt64?
        if !handshakeEnded, let handshake = timeouts.handshake?.wholeNanoseconds {
            deadline = startedAt &+ handshake
        }
        if let idle = timeouts.idle?.wholeNanoseconds {
            let idleDeadline = max(lastActivity, startedAt) &+ idle
            deadline = min(deadline ?? .max, idleDeadline)
        }
        if messageDeadline != 0 { deadline = min(deadline ?? .max, messageDeadline) }
        return deadline
    }

    func timeoutsChanged() {
        checkThread()
        guard state != .closed, timeouts.isLimited || deadlineSlot >= 0 else { return }
        loop.deadlines.update(self)
    }

    /// The wheel found the deadline past: ends the connection with
    /// `.timedOut`, saying which limit it broke.
    func deadlinePassed(now: UInt64) {
        guard state != .closed else { return }
        if messageDeadline != 0 && messageDeadline <= now {
            loop.statistics.messageTimeouts &+= 1
            tearDown(error: EvplError(.timedOut, operation: "message", context: "\(remoteAddress): a message not received whole within \(messageLimit)"))
        } else if !handshakeEnded, let handshake = timeouts.handshake, let limit = handshake.wholeNanoseconds, startedAt &+ limit <= now {
            loop.statistics.handshakeTimeouts &+= 1
            tearDown(error: EvplError(.timedOut, operation: "handshake", context: "\(remoteAddress): no handshake within \(handshake)"))
        } else if let idle = timeouts.idle {
            loop.statistics.idleTimeouts &+= 1
            tearDown(error: EvplError(.timedOut, operation: "idle", context: "\(remoteAddress): nothing received or sent for \(idle)"))
        }
    }
}
