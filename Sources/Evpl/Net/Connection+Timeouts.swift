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
        if !handshakeEnded, let handshake = timeouts.handshake, let limit = handshake.wholeNanoseconds, startedAt &+ limit <= now {
            loop.statistics.handshakeTimeouts &+= 1
            tearDown(error: EvplError(.timedOut, operation: "handshake", context: "\(remoteAddress): no handshake within \(handshake)"))
        } else if let idle = timeouts.idle {
            loop.statistics.idleTimeouts &+= 1
            tearDown(error: EvplError(.timedOut, operation: "idle", context: "\(remoteAddress): nothing received or sent for \(idle)"))
        }
    }
}
