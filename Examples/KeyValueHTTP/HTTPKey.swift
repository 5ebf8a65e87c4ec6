import EvplHTTP
import HTTPTypes

/// How the HTTP key-value servers read a request: the key is the target's
/// path after its `/`, as sent (no query, not empty, no further `/`).
public enum HTTPKey {
    /// The key a request names, or `nil` for a target that names none.
    public static func of(_ request: HTTPRequest) -> String? {
        guard let path = request.path?.prefix(while: { $0 != "?" }), path.hasPrefix("/") else { return nil }
        let key = path.dropFirst()
        guard !key.isEmpty, !key.contains("/") else { return nil }
        return String(key)
    }

    /// The limits the servers read requests with: a value must fit one log
    /// record, one pool buffer (64 KiB) with its key and lengths.
    public static let configuration = HTTPServerConfiguration(limits: HTTPLimits(body: 60_000))

    /// `405` naming the methods the servers answer.
    public static var methodNotAllowed: HTTPResponse {
        var response = HTTPResponse(status: .methodNotAllowed)
        response.headerFields[.allow] = "GET, HEAD, PUT, DELETE"
        return response
    }

    /// `200` with a value's type.
    public static var found: HTTPResponse {
        var response = HTTPResponse(status: .ok)
        response.headerFields[.contentType] = "application/octet-stream"
        return response
    }
}
