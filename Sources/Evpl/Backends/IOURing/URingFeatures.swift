import CEvplLinux
import CURing
#if canImport(Glibc)
import Glibc
#endif

/// What this kernel's io_uring offers the backend, probed once per process
/// by setting up small rings: the setup flags, the opcodes it relies on and
/// provided-buffer rings.
struct URingFeatures: Sendable {
    /// One probed capability and whether the kernel has it.
    struct Feature: Sendable {
        var name: String
        var available: Bool
        var reason: String
    }

    /// The errno of setting up a ring the way loops do, or 0.
    var setupError: Int32
    var features: [Feature]

    /// The probe's result for this process.
    static let current = URingFeatures.probe()

    /// The setup flags every loop's ring uses.
    static let loopSetupFlags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG
        | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL

    /// Opcodes the network backend cannot work without.
    private static let requiredOpcodes: [(String, io_uring_op)] = [
        ("CONNECT", IORING_OP_CONNECT), ("ACCEPT", IORING_OP_ACCEPT), ("RECV", IORING_OP_RECV),
        ("SEND", IORING_OP_SEND), ("SENDMSG", IORING_OP_SENDMSG), ("SEND_ZC", IORING_OP_SEND_ZC),
        ("SENDMSG_ZC", IORING_OP_SENDMSG_ZC), ("ASYNC_CANCEL", IORING_OP_ASYNC_CANCEL),
        ("POLL_ADD", IORING_OP_POLL_ADD),
    ]

    /// Why the io_uring network backend cannot run here, or `nil` if it can.
    var unavailableReason: String? {
        if setupError != 0 {
            return "io_uring_setup with SINGLE_ISSUER|DEFER_TASKRUN failed: \(String(cString: strerror(setupError)))"
        }
        let missing = features.filter { !$0.available && $0.reason != Self.optional }.map(\.name)
        return missing.isEmpty ? nil : "kernel lacks \(missing.joined(separator: ", "))"
    }

    private static let optional = "optional"

    private static func probe() -> URingFeatures {
        var features: [Feature] = []
        let setups: [(String, UInt32)] = [
            ("setup SINGLE_ISSUER", IORING_SETUP_SINGLE_ISSUER),
            ("setup DEFER_TASKRUN", IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN),
            ("setup TASKRUN_FLAG", IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG),
            ("setup SUBMIT_ALL", IORING_SETUP_SUBMIT_ALL),
            ("setup CQSIZE", IORING_SETUP_CQSIZE),
        ]
        for (name, flags) in setups {
            let status = withRing(flags: flags) { _ in 0 }
            features.append(Feature(name: name, available: status == 0, reason: status == 0 ? "" : String(cString: strerror(status))))
        }
        let sqPoll = withRing(flags: IORING_SETUP_SQPOLL) { _ in 0 }
        features.append(Feature(name: "setup SQPOLL", available: sqPoll == 0, reason: sqPoll == 0 ? "" : optional))
        var opcodeFeatures: [Feature] = []
        var ringFeatures: [Feature] = []
        let setupError = withRing(flags: loopSetupFlags) { ring in
            if let probe = io_uring_get_probe_ring(ring) {
                for (name, opcode) in requiredOpcodes {
                    let supported = io_uring_opcode_supported(probe, Int32(opcode.rawValue)) != 0
                    opcodeFeatures.append(Feature(name: "opcode \(name)", available: supported, reason: supported ? "" : "not supported"))
                }
                io_uring_free_probe(probe)
            }
            var error: Int32 = 0
            if let buffers = cevpl_uring_register_buffer_ring(ring, 1, 0, 0, &error) {
                cevpl_uring_unregister_buffer_ring(ring, buffers, 1, 0)
            }
            ringFeatures.append(Feature(name: "provided buffer ring", available: error == 0, reason: error == 0 ? "" : String(cString: strerror(error))))
            var incrementalError: Int32 = 0
            if let buffers = cevpl_uring_register_buffer_ring(ring, 1, 0, CEVPL_IOU_PBUF_RING_INC, &incrementalError) {
                cevpl_uring_unregister_buffer_ring(ring, buffers, 1, 0)
            }
            // Without it (before kernel 6.12) each receive takes a whole buffer.
            ringFeatures.append(Feature(name: "incremental buffer consumption", available: incrementalError == 0,
                                        reason: incrementalError == 0 ? "" : Self.optional))
            let features = ring.pointee.features
            for (name, bit) in [("feature NODROP", IORING_FEAT_NODROP), ("feature FAST_POLL", IORING_FEAT_FAST_POLL)] {
                let present = features & bit != 0
                ringFeatures.append(Feature(name: name, available: present, reason: present ? "" : "not reported"))
            }
            return 0
        }
        return URingFeatures(setupError: setupError, features: features + opcodeFeatures + ringFeatures)
    }

    /// Sets up an 8-entry ring with `flags`, runs `body` on it and tears it
    /// down. Returns `body`'s result, or the setup's errno.
    private static func withRing(flags: UInt32, _ body: (UnsafeMutablePointer<io_uring>) -> Int32) -> Int32 {
        let ring = UnsafeMutablePointer<io_uring>.allocate(capacity: 1)
        defer { ring.deallocate() }
        ring.initialize(to: io_uring())
        var params = io_uring_params()
        params.flags = flags
        params.cq_entries = 16
        let status = io_uring_queue_init_params(8, ring, &params)
        guard status == 0 else { return -status }
        cevpl_uring_mapped()
        defer {
            cevpl_uring_unmapping()
            io_uring_queue_exit(ring)
        }
        return body(ring)
    }
}
