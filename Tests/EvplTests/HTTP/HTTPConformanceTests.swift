@testable import Evpl
import EvplHTTP
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The server against the RFC model of `HTTPConformanceModel.swift`: every
/// well-formed request shape, delivered whole, in two writes, a byte at a
/// time and pipelined behind a second request; then every defect.
@Suite struct HTTPConformanceTests {
    /// The ways a shape reaches the server, taken in turn.
    enum Arrival: CaseIterable {
        case whole, split, byteAtATime, pipelined
    }

    @Test(arguments: StreamCase.backends)
    func wellFormedRequests(backend: EvplProtocol.Backend) throws {
        let server = try HTTPTestServer(backend: backend)
        let shapes = HTTPRequestShape.all
        #expect(shapes.count > 1_000)
        var failures = 0
        for (index, shape) in shapes.enumerated() {
            let arrival = Arrival.allCases[index % Arrival.allCases.count]
            let problems = try check(shape, arrival: shape.expectContinue && arrival == .pipelined ? .whole : arrival, server: server)
            if !problems.isEmpty {
                failures += 1
                Issue.record("\(shape) [\(arrival)]: \(problems.joined(separator: "; "))")
                if failures > 10 { return }
            }
        }
    }

    /// What the server got wrong about `shape`, if anything.
    private func check(_ shape: HTTPRequestShape, arrival: Arrival, server: HTTPTestServer) throws -> [String] {
        let client = try RawHTTPClient(server.address)
        let (head, body) = shape.wire
        let second = Array("GET /second HTTP/1.1\r\nHost: example.org\r\n\r\n".utf8)
        var problems: [String] = []
        let delivery: Delivery = switch arrival {
        case .whole, .pipelined: .whole
        case .split: .split
        case .byteAtATime: .byteAtATime
        }
        if shape.expectContinue {
            client.send(head, delivery)
            // RFC 9110 10.1.1: the server sends 100 before the client sends the body.
            guard let interim = client.readResponse(), interim.status == 100 else { return ["no 100 Continue before the body"] }
            client.send(body, delivery)
        } else {
            client.send(head + body + (arrival == .pipelined ? second : []), delivery)
        }
        guard let response = client.readResponse(method: shape.method) else { return ["no response"] }
        if response.status != 200 { return ["status \(response.status) \(String(decoding: response.body, as: UTF8.self))"] }
        if shape.method == "HEAD" {
            // RFC 9110 9.3.2: no content; the length a GET would have.
            if response.field("Content-Length") == nil { problems.append("HEAD response without Content-Length") }
        } else {
            let echoed = response.echoed
            for (key, value) in shape.expected where echoed[key] != value {
                problems.append("\(key): \(echoed[key] ?? "nil"), RFC: \(value)")
            }
            let fields = echoed["fields"] ?? ""
            if !fields.split(separator: "|").contains(Substring("X-A:\(shape.expectedFieldValue)")) {
                problems.append("X-A read as \(fields)")
            }
        }
        if response.field("Date") == nil { problems.append("no Date (RFC 9110 6.6.1: an origin server with a clock MUST send it)") }
        // RFC 9112 9.3 and 9.6.
        let connection = response.field("Connection")?.lowercased()
        if !shape.keepsAlive && connection != "close" { problems.append("Connection: \(connection ?? "nil") on a closing response") }
        if shape.keepsAlive && shape.minorVersion == 0 && connection != "keep-alive" { problems.append("no keep-alive to an HTTP/1.0 client") }
        if shape.keepsAlive {
            if arrival != .pipelined { client.send(second) }
            guard let next = client.readResponse(), next.status == 200, next.echoed["target"] == "/second" else {
                return problems + ["the connection did not persist"]
            }
        } else if !client.closedByServer() {
            // RFC 9112 9.6: no request after close is processed.
            problems.append("the server did not close")
        }
        return problems
    }

    @Test(arguments: StreamCase.backends)
    func defectsGetTheirStatusAndClose(backend: EvplProtocol.Backend) throws {
        let server = try HTTPTestServer(backend: backend, limits: HTTPLimits(body: 64 << 10))
        var divergencesSeen = Set<String>()
        for defect in HTTPDefect.all {
            for delivery in Delivery.allCases {
                if delivery == .byteAtATime && defect.request.count > 4096 { continue }
                let client = try RawHTTPClient(server.address)
                client.send(defect.request, delivery)
                guard let response = client.readResponse() else {
                    let refusals = try server.onLoop { $0.statistics.admissionRefusals }
                    Issue.record("\(defect) [\(delivery)]: no response (closed \(client.peerClosed), errno \(client.lastErrno), \(client.unparsed) bytes unparsed, \(refusals) admission refusals)")
                    continue
                }
                let listed = httpDivergences[defect.name]
                if let listed {
                    divergencesSeen.insert(defect.name)
                    #expect(response.status == listed.status, "\(defect) [\(delivery)]: \(response.status), the divergence table says \(listed.status)")
                    #expect(!defect.permitted.contains(response.status), "\(defect): listed as a divergence, but \(response.status) is what the RFC permits")
                } else {
                    #expect(defect.permitted.contains(response.status),
                            "\(defect) [\(delivery)]: \(response.status) where \(defect.section) permits \(defect.permitted.sorted()); an unlisted divergence")
                }
                #expect(response.field("Connection")?.lowercased() == "close", "\(defect): no Connection: close")
                #expect(client.closedByServer(), "\(defect) [\(delivery)]: the connection stayed open")
            }
        }
        #expect(divergencesSeen == Set(httpDivergences.keys), "divergences listed for no defect: \(Set(httpDivergences.keys).subtracting(divergencesSeen))")
    }
}
