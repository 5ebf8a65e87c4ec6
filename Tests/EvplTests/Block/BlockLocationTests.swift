@testable import Evpl
import Glibc
import Testing

@Suite("Block device locations")
struct BlockLocationTests {
    @Test("a plain path is used exactly as written, % and :// included")
    func plainPaths() throws {
        for path in ["/dev/nvme0n1", "relative/disk.img", "/tmp/100%", "/tmp/a b", "/srv/x://y", "1file://x", "C:/x"] {
            #expect(try BlockLocation.path(from: path) == path)
        }
    }

    @Test("a file URI names its absolute path, escapes decoded, host empty or localhost")
    func fileURIs() throws {
        let cases = [
            ("file:///tmp/disk.img", "/tmp/disk.img"),
            ("file://localhost/tmp/disk.img", "/tmp/disk.img"),
            ("FILE://LocalHost/tmp/x", "/tmp/x"),
            ("file:///tmp/a%20b%3Fc%23d%25", "/tmp/a b?c#d%"),
            ("file:///tmp/%E2%82%ac", "/tmp/\u{20AC}"),
            ("file:///", "/"),
        ]
        for (uri, path) in cases {
            #expect(try BlockLocation.path(from: uri) == path, "\(uri)")
        }
    }

    @Test("a location that names no local file is an invalidArgument error that quotes it")
    func badLocations() {
        let bad = [
            "", "/tmp/a\u{0}b", "http://example/disk", "nvme://0000:01:00.0/1", "file://", "file://localhost",
            "file://host/tmp/x", "file:///tmp/a%2", "file:///tmp/a%zz", "file:///tmp/a%", "file:///tmp/a%00b",
            "file:///tmp/a?b", "file:///tmp/a#b", "file:///tmp/%FF",
        ]
        for location in bad {
            do {
                let path = try BlockLocation.path(from: location)
                Issue.record("\(location.debugDescription) was taken as \(path.debugDescription)")
            } catch {
                #expect(error.code == .invalidArgument, "\(location.debugDescription): \(error)")
                #expect(location.isEmpty || error.context.contains(location.debugDescription), "\(error)")
            }
        }
    }

    @Test("openBlockDevice opens the file a URI names, and rejects a bad one before touching the disk")
    func openThroughURI() throws {
        let loop = try makeLoop()
        let directory = "/var/tmp/evpl location \(getpid())"
        #expect(mkdir(directory, 0o755) == 0)
        defer { rmdir(directory) }
        let path = directory + "/disk #1.img"
        defer { unlink(path) }
        let device = try loop.openBlockDevice("file://localhost/var/tmp/evpl%20location%20\(getpid())/disk%20%231.img", engine: .psync, create: 4096)
        #expect(device.path == path)
        var status = stat()
        #expect(stat(path, &status) == 0 && status.st_size == 4096)
        device.close()
        #expect {
            _ = try loop.openBlockDevice("file:///var/tmp/evpl%2", engine: .psync, create: 4096)
        } throws: { ($0 as? EvplError)?.code == .invalidArgument }
        #expect(access("/var/tmp/evpl%2", F_OK) != 0)
    }
}
