import Evpl
import Testing

@Suite("Configuration and addresses")
struct ConfigTests {
    @Test("an unparsable EVPL_SPIN_NS is an invalidArgument error naming the variable")
    func invalidEnvironment() {
        #expect {
            _ = try EvplConfig.fromEnvironment(["EVPL_SPIN_NS": "abc"])
        } throws: { error in
            guard let error = error as? EvplError else { return false }
            return error.code == .invalidArgument && error.context.contains("EVPL_SPIN_NS") && "\(error)".contains("EVPL_SPIN_NS")
        }
        for (name, value) in [("EVPL_BUFFER_SIZE", "1024"), ("EVPL_MAX_EVENTS", "0"), ("EVPL_SPIN_YIELD", "2"), ("EVPL_SEND_LOW_WATERMARK", "-5")] {
            #expect {
                _ = try EvplConfig.fromEnvironment([name: value])
            } throws: { error in
                (error as? EvplError)?.code == .invalidArgument && (error as? EvplError)?.context.contains(name) == true
            }
        }
    }

    /// One list in code, one table in the docs: a variable added, renamed
    /// or dropped on one side only fails here.
    @Test("every variable of EvplConfig.environmentVariables is parsed, checked and in the DocC configuration table, and the table names no other")
    func environmentTableMatchesDocs() throws {
        let names = EvplConfig.environmentVariables.map(\.name)
        for name in names {
            #expect {
                _ = try EvplConfig.fromEnvironment([name: "not a number"])
            } throws: { error in
                (error as? EvplError)?.code == .invalidArgument && (error as? EvplError)?.context.contains(name) == true
            }
        }
        let table = String(decoding: try fileContents(repositoryRoot + "/Sources/Evpl/Evpl.docc/Configuration.md"), as: UTF8.self)
        // Rows of the variables table start with the variable in backticks.
        let documented = table.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("| `EVPL_") else { return nil }
            return String(line.dropFirst(3).prefix { $0 != "`" })
        }
        #expect(documented.sorted() == names.sorted(), "documented \(documented.sorted()), in code \(names.sorted())")
    }

    @Test("valid EVPL_* overrides apply; other variables are ignored")
    func validEnvironment() throws {
        let config = try EvplConfig.fromEnvironment([
            "EVPL_BUFFER_SIZE": "8192",
            "EVPL_BUFFERS_PER_SLAB": "16",
            "EVPL_SPIN_NS": " 0 ",
            "EVPL_SPIN_YIELD": "0",
            "EVPL_SEND_LOW_WATERMARK": "1000",
            "EVPL_MAX_EVENTS": "32",
            "UNRELATED": "whatever",
        ])
        #expect(config.bufferSize == 8192)
        #expect(config.buffersPerSlab == 16)
        #expect(config.spinNanoseconds == 0)
        #expect(config.spinYields == false)
        #expect(config.sendLowWatermark == 1000)
        #expect(config.maxEventsPerPoll == 32)
        #expect(try EvplConfig.fromEnvironment([:]) == EvplConfig())
    }

    @Test("Unix paths: relative, empty, \"/\" and 108 bytes rejected; 107 bytes accepted")
    func unixPaths() throws {
        for path in ["relative/socket", "", "/"] {
            #expect {
                _ = try SocketAddress(unixPath: path)
            } throws: { error in
                (error as? EvplError)?.code == .invalidAddress
            }
        }
        let long = "/tmp/" + String(repeating: "p", count: 103)
        #expect(long.utf8.count == 108)
        #expect {
            _ = try SocketAddress(unixPath: long)
        } throws: { error in
            (error as? EvplError)?.code == .pathTooLong
        }
        let longest = String(long.dropLast())
        #expect(longest.utf8.count == 107)
        let address = try SocketAddress(unixPath: longest)
        #expect(address.description == longest)
        #expect(address.isUnix && address.port == nil)
    }

    @Test("a 107-byte Unix path can be listened on and connected to")
    func longestPathWorks() throws {
        let prefix = "/tmp/evpl-\(UniqueName.next())-"
        let path = prefix + String(repeating: "q", count: 107 - prefix.utf8.count)
        #expect(path.utf8.count == 107)
        try roundTrip(SocketAddress(unixPath: path))
    }

    @Test("abstract names: empty and 108 bytes rejected; 107 bytes accepted and usable")
    func abstractNames() throws {
        #expect {
            _ = try SocketAddress(abstractName: "")
        } throws: { error in
            (error as? EvplError)?.code == .invalidAddress
        }
        let tooLong = String(repeating: "a", count: 108)
        #expect {
            _ = try SocketAddress(abstractName: tooLong)
        } throws: { error in
            (error as? EvplError)?.code == .pathTooLong
        }
        let prefix = "evpl-\(UniqueName.next())-"
        let name = prefix + String(repeating: "a", count: 107 - prefix.utf8.count)
        let address = try SocketAddress(abstractName: name)
        #expect(address.description == "@" + name)
        try roundTrip(address)
    }

    /// Listens on `address`, connects, and checks both ends see a connection
    /// and that the listener reports the same address.
    private func roundTrip(_ address: SocketAddress) throws {
        let loop = try makeLoop()
        let listener = try Listener(address: address, protocol: .unix)
        #expect(listener.address == address, "listener bound to \(listener.address), asked for \(address)")
        let server = EventLog()
        loop.attach(to: listener) { $0.handler = server.handle }
        let client = EventLog()
        let connection = try loop.connect(to: listener.address, protocol: .unix) { client.handle($0, $1) }
        try spin(loop, seconds: 10, "both ends connected") { server.connected == 1 && client.connected == 1 }
        connection.close()
        try spin(loop, seconds: 10, "both disconnects") { server.disconnected == 1 && client.disconnected == 1 }
        listener.close()
        expectNoLeaks(loop)
    }

    @Test("descriptions and parsing round-trip",
          arguments: ["127.0.0.1:80", "[::1]:80", "/tmp/evpl-description.sock", "@name", "0.0.0.0:0", "[fe80::1]:65535"])
    func descriptions(text: String) throws {
        let address = try SocketAddress(parsing: text)
        #expect(address.description == text)
        #expect(try SocketAddress(parsing: address.description) == address)
    }

    /// Found by Fuzz/FuzzAddress: the scope of a link-scoped IPv6 address
    /// was left out of its description, which then named another address.
    @Test("an IPv6 scope survives the round trip", arguments: ["[fe80::1%2]:80", "9999::A:9c%99996:9"])
    func scopedRoundTrip(text: String) throws {
        let address = try SocketAddress(parsing: text)
        #expect(address.description.contains("%"), "\(address)")
        #expect(try SocketAddress(parsing: address.description) == address)
    }

    @Test("constructed addresses describe themselves as expected")
    func constructedDescriptions() throws {
        #expect(try SocketAddress(host: "127.0.0.1", port: 80).description == "127.0.0.1:80")
        #expect(try SocketAddress(host: "::1", port: 80).description == "[::1]:80")
        #expect(try SocketAddress(unixPath: "/tmp/x.sock").description == "/tmp/x.sock")
        #expect(try SocketAddress(abstractName: "name").description == "@name")
        #expect(try SocketAddress(host: "127.0.0.1", port: 80) == SocketAddress(parsing: "127.0.0.1:80"))
        #expect(try SocketAddress(host: "::1", port: 80) == SocketAddress(parsing: "[::1]:80"))
    }

    @Test("unparsable addresses throw invalidAddress", arguments: ["nonsense", "127.0.0.1", "127.0.0.1:99999", "[::1]:", ":80x"])
    func unparsable(text: String) {
        #expect {
            _ = try SocketAddress(parsing: text)
        } throws: { error in
            (error as? EvplError)?.code == .invalidAddress
        }
    }
}
