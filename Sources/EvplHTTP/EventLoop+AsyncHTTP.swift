import Evpl
import HTTPTypes

/// A request handed to an async handler: its head, and its body as it arrives.
public final class HTTPServerRequest {
    /// Method, target, fields, version and framing.
    public let head: HTTPRequestHead
    /// The body, as an async sequence (empty when the request has none).
    public let body: HTTPRequestBody

    init(head: HTTPRequestHead, body: HTTPRequestBody) {
        self.head = head
        self.body = body
    }
}

/// The request and writer of one request of an async server connection.
private final class AsyncRequestState {
    let request: HTTPServerRequest
    let writer: HTTPResponseWriter

    init(request: HTTPServerRequest, writer: HTTPResponseWriter) {
        self.request = request
        self.writer = writer
    }
}

extension EventLoop {
    /// Serves HTTP on every connection `listener` hands this loop with a
    /// task per request: `respond` gets the request (its body an async
    /// sequence) and a writer to answer with, and runs on this loop's
    /// executor.
    ///
    /// A handler that returns without answering gets a `500` sent for it,
    /// and one that throws too; one that throws after its head went out
    /// has its connection closed, as nothing could tell the client the
    /// body is cut short. Requests on one connection are answered in
    /// order: the next request's task starts once this one's response ended.
    public func serveHTTP(from listener: Listener, configuration: HTTPServerConfiguration = .init(),
                          respond: @escaping @Sendable (HTTPServerRequest, HTTPResponseWriter) async throws -> Void) {
        let executor = self.executor
        serveHTTP(from: listener, configuration: configuration) { exchange, event in
            switch event {
            case .head(let head):
                // A previous handler that answered before reading all of its body gets no more of it.
                (exchange.context as? AsyncRequestState)?.request.body.fail(
                    EvplError(.invalidState, operation: "receive", context: "the response ended before the body was read"))
                let body = HTTPRequestBody(exchange: exchange)
                let state = AsyncRequestState(request: HTTPServerRequest(head: head, body: body), writer: HTTPResponseWriter(exchange: exchange))
                exchange.context = state
                let bound = LoopBound(value: (state, exchange))
                Task(executorPreference: executor) {
                    let (state, exchange) = bound.value
                    do {
                        try await respond(state.request, state.writer)
                        if !state.writer.headWritten {
                            try? state.writer.respond(HTTPResponse(status: .internalServerError), body: Array("the handler returned without a response\n".utf8))
                        } else if !state.writer.ended {
                            try? state.writer.end()
                        }
                    } catch {
                        if !state.writer.headWritten {
                            try? state.writer.respond(HTTPResponse(status: .internalServerError))
                        } else if !state.writer.ended {
                            exchange.connection.close()
                        }
                    }
                }
            case .body(let bytes):
                (exchange.context as? AsyncRequestState)?.request.body.append(bytes)
            case .end:
                (exchange.context as? AsyncRequestState)?.request.body.finish()
            case .writable:
                break  // The writer waits through `onWritable`.
            case .closed(let error):
                guard let state = exchange.context as? AsyncRequestState else { return }
                let ended = error ?? EvplError(.invalidState, operation: "receive", context: "the connection ended")
                state.request.body.fail(ended)
                state.writer.connectionEnded(ended)
                exchange.context = nil
            }
        }
    }
}
