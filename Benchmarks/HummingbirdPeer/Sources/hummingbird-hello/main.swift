import Hummingbird
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

// hummingbird-hello PORT: answers GET / with 200 and "hello world" (text/plain)
// on 127.0.0.1:PORT, one event loop thread, until killed. Prints
// "listening on 127.0.0.1:PORT" once it serves, as the evpl servers do.
let port = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 8080 : 8080
let router = Router()
router.get("/") { _, _ -> String in "hello world" }
let app = Application(
    router: router,
    configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: port), serverName: nil),
    onServerRunning: { _ in
        print("listening on 127.0.0.1:\(port)")
        fflush(nil)
    },
    eventLoopGroupProvider: .shared(MultiThreadedEventLoopGroup(numberOfThreads: 1))
)
try await app.runService()
