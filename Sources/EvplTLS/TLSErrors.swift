import COpenSSL
import Evpl

/// OpenSSL's errors as `EvplError`s, and the PEM parsing the context needs.
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

    /// The SHA-256 of `certificate`'s SubjectPublicKeyInfo.
    static func publicKeyPin(of certificate: OpaquePointer) throws(EvplError) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        guard cevpl_public_key_sha256(certificate, &digest) == 1 else {
            throw openSSL(.tls, "public key pin", context: "the certificate's public key")
        }
        return digest
    }

    /// Every certificate in PEM text; the caller frees them.
    static func certificates(in pem: [UInt8], operation: String) throws(EvplError) -> [OpaquePointer] {
        try certificates(from: .bytes(pem), operation: operation)
    }

    /// Every certificate in a PEM file or PEM text; the caller frees them.
    static func certificates(from pem: TLSConfiguration.PEM, operation: String) throws(EvplError) -> [OpaquePointer] {
        var certificates: [OpaquePointer] = []
        let read = { (bio: OpaquePointer?) in
            guard let bio else { return }
            defer { BIO_free(bio) }
            while let certificate = PEM_read_bio_X509(bio, nil, nil, nil) {
                certificates.append(certificate)
            }
        }
        switch pem {
        case .file(let path):
            read(BIO_new_file(path, "r"))
        case .bytes(let bytes):
            bytes.withUnsafeBytes { raw in read(BIO_new_mem_buf(raw.baseAddress, Int32(raw.count))) }
        }
        // Reading stops with a "no start line" error at the end of the data.
        ERR_clear_error()
        guard !certificates.isEmpty else {
            let source = if case .file(let path) = pem { path } else { "the PEM data" }
            throw EvplError(.invalidArgument, operation: operation, context: "no certificate in \(source)")
        }
        return certificates
    }
}
