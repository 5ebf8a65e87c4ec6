import COpenSSL

/// OpenSSL's errors as ``EvplError``s, and the PEM parsing the context needs.
enum TLSErrors {
    /// An error whose context ends with the reasons on OpenSSL's error
    /// queue for this thread, which it empties.
    static func openSSL(_ code: EvplError.Code, _ operation: String, context: String) -> EvplError {
        let reasons = drainQueue()
        return EvplError(code, operation: operation, context: reasons.isEmpty ? context : "\(context): \(reasons)")
    }

    /// The reasons on this thread's OpenSSL error queue, emptied; "" when none.
    static func drainQueue() -> String {
        var reasons: [String] = []
        while case let code = ERR_get_error(), code != 0 {
            var text = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &text, text.count)
            let reason = ERR_reason_error_string(code).map { String(cString: $0) }
            reasons.append(reason ?? String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return reasons.joined(separator: "; ")
    }

    /// Every certificate in PEM text; the caller frees them.
    static func certificates(in pem: [UInt8], operation: String) throws(EvplError) -> [OpaquePointer] {
        var certificates: [OpaquePointer] = []
        pem.withUnsafeBytes { raw in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return }
            defer { BIO_free(bio) }
            while let certificate = PEM_read_bio_X509(bio, nil, nil, nil) {
                certificates.append(certificate)
            }
        }
        // Reading stops with a "no start line" error at the end of the data.
        ERR_clear_error()
        guard !certificates.isEmpty else {
            throw EvplError(.invalidArgument, operation: operation, context: "no certificate in the PEM data")
        }
        return certificates
    }
}
