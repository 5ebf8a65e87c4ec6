/// The `Content-Type` a file's extension suggests; what nginx's default
/// `mime.types` gives the common ones, `application/octet-stream` otherwise.
enum HTTPMediaType {
    static func forFile(named path: String) -> String {
        guard let dot = path.lastIndex(of: "."), !path[dot...].contains("/") else { return fallback }
        return types[path[path.index(after: dot)...].lowercased()] ?? fallback
    }

    private static let fallback = "application/octet-stream"

    private static let types: [String: String] = [
        "html": "text/html", "htm": "text/html", "css": "text/css", "txt": "text/plain", "xml": "text/xml",
        "js": "application/javascript", "mjs": "application/javascript", "json": "application/json",
        "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "svg": "image/svg+xml",
        "webp": "image/webp", "ico": "image/x-icon", "avif": "image/avif",
        "pdf": "application/pdf", "wasm": "application/wasm", "zip": "application/zip", "gz": "application/gzip",
        "tar": "application/x-tar", "mp4": "video/mp4", "webm": "video/webm", "mp3": "audio/mpeg",
        "woff": "font/woff", "woff2": "font/woff2",
    ]
}
