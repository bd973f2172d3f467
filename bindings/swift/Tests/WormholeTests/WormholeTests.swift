// XCTest suite equal to bindings/kotlin's JUnit tests: real exchanges through libwormhole
// against our wormhole-server ($WORMHOLE_SERVER_BIN) on 127.0.0.1, and interop with the
// reference CLI ($WORMHOLE_REF_VENV). Run by scripts/suites/kotlin.sh where `swift` exists.
import Foundation
import XCTest
@testable import Wormhole

final class WormholeTests: XCTestCase {
    static var server: Process?
    static var url = ""
    let appid = "dev.wormhole/swift-test"

    override class func setUp() {
        super.setUp()
        guard let bin = ProcessInfo.processInfo.environment["WORMHOLE_SERVER_BIN"] else {
            fatalError("WORMHOLE_SERVER_BIN is not set (run scripts/test.sh)")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: bin)
        p.arguments = ["mailbox", "--listen", "127.0.0.1:0", "--db", ":memory:"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try! p.run()
        server = p
        var buffer = ""
        while !buffer.contains("/v1") {
            let data = err.fileHandleForReading.availableData
            if data.isEmpty { fatalError("wormhole-server exited before it was ready") }
            buffer += String(decoding: data, as: UTF8.self)
        }
        let range = buffer.range(of: "ws://[^ ]+/v1", options: .regularExpression)!
        url = String(buffer[range])
    }

    override class func tearDown() {
        server?.terminate()
        super.tearDown()
    }

    func open(_ options: WormholeOptions = WormholeOptions()) throws -> Wormhole {
        try Wormhole(appid: appid, relayUrl: Self.url, options: options)
    }

    func testExchange() async throws {
        let a = try open(), b = try open()
        try a.allocateCode(length: 2)
        let code = try await a.getCode()
        try b.setCode(code: code)
        try a.sendMessage(message: Data("from a".utf8))
        try b.sendMessage(message: Data("from b".utf8))
        let ma = try await a.getMessage()
        let mb = try await b.getMessage()
        XCTAssertEqual(String(decoding: ma, as: UTF8.self), "from b")
        XCTAssertEqual(String(decoding: mb, as: UTF8.self), "from a")
        let va = try await a.getVerifier()
        let vb = try await b.getVerifier()
        XCTAssertEqual(va.count, 32)
        XCTAssertEqual(va, vb)
        XCTAssertEqual(try a.deriveKey(purpose: "p", length: 16), try b.deriveKey(purpose: "p", length: 16))
        async let sa: Void = a.shutdown()
        async let sb: Void = b.shutdown()
        _ = try await (sa, sb)
    }

    func testWrongCode() async throws {
        let a = try open(), b = try open()
        try a.allocateCode(length: 2)
        let code = try await a.getCode()
        try b.setCode(code: code.split(separator: "-")[0] + "-wrong-words")
        try a.sendMessage(message: Data("x".utf8))
        try b.sendMessage(message: Data("y".utf8))
        do {
            _ = try await b.getMessage()
            XCTFail("expected WrongPassword")
        } catch WormholeError.WrongPassword {
        }
    }

    func testBadCodes() throws {
        XCTAssertThrowsError(try validateCode(code: "4 purple sausages")) { e in
            guard case WormholeError.InvalidCode = e else { return XCTFail("\(e)") }
        }
        try validateCode(code: "4-purple-sausages")
        let w = try open()
        XCTAssertThrowsError(try w.setCode(code: "x-purple"))
        XCTAssertThrowsError(try w.deriveKey(purpose: "p", length: 32)) { e in
            guard case WormholeError.NoKey = e else { return XCTFail("\(e)") }
        }
        w.cancel()
    }

    func testCancel() async throws {
        let w = try open()
        try w.allocateCode(length: 2)
        _ = try await w.getCode()
        let pending = Task { try await w.getMessage() }
        try await Task.sleep(nanoseconds: 200_000_000)
        w.cancel()
        do {
            _ = try await pending.value
            XCTFail("expected Cancelled")
        } catch WormholeError.Cancelled {
        }
    }

    func testManyAtOnce() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<25 {
                group.addTask {
                    let a = try self.open(), b = try self.open()
                    try a.allocateCode(length: 2)
                    try b.setCode(code: try await a.getCode())
                    try a.sendMessage(message: Data("a\(i)".utf8))
                    let got = try await b.getMessage()
                    XCTAssertEqual(String(decoding: got, as: UTF8.self), "a\(i)")
                    a.cancel()
                    b.cancel()
                }
            }
            try await group.waitForAll()
        }
    }

    final class Recorder: WormholeDelegate, @unchecked Sendable {
        let lock = NSLock()
        var events: [String] = []
        func rec(_ s: String) { lock.lock(); events.append(s); lock.unlock() }
        func onWelcome(welcomeJson: String) throws { rec("welcome") }
        func onCode(code: String) throws { rec("code \(code)") }
        func onUnverifiedKey(key: Data) throws { rec("key \(key.count)") }
        func onVerifier(verifier: Data) throws { rec("verifier \(verifier.count)") }
        func onVersions(versionsJson: String) throws { rec("versions") }
        func onMessage(message: Data) throws { rec("message \(String(decoding: message, as: UTF8.self))") }
        func onClosed(outcome: Outcome) throws { rec("closed \(outcome.happy)") }
        func wait(for prefix: String) async throws -> String {
            for _ in 0..<600 {
                lock.lock(); let hit = events.first { $0.hasPrefix(prefix) }; lock.unlock()
                if let hit { return hit }
                try await Task.sleep(nanoseconds: 100_000_000)
            }
            XCTFail("no \(prefix) event")
            return ""
        }
    }

    func testDelegate() async throws {
        let da = Recorder(), db = Recorder()
        let a = try Wormhole.withDelegate(appid: appid, relayUrl: Self.url, options: WormholeOptions(), delegate: da)
        let b = try Wormhole.withDelegate(appid: appid, relayUrl: Self.url, options: WormholeOptions(), delegate: db)
        try a.allocateCode(length: 2)
        let code = String(try await da.wait(for: "code ").dropFirst(5))
        try b.setCode(code: code)
        try a.sendMessage(message: Data("hi b".utf8))
        XCTAssertEqual(try await db.wait(for: "message"), "message hi b")
        try a.sendMessage(message: Data("x".utf8))
        try b.sendMessage(message: Data("y".utf8))
        _ = try await da.wait(for: "message")
        async let sa: Void = a.shutdown()
        async let sb: Void = b.shutdown()
        _ = try await (sa, sb)
        XCTAssertEqual(try await da.wait(for: "closed"), "closed true")
    }

    func testInputHelper() async throws {
        let a = try open(), b = try open()
        try a.allocateCode(length: 2)
        let code = try await a.getCode()
        let nameplate = String(code.split(separator: "-")[0])
        let h = try b.inputCode()
        var completions: [String] = []
        while !completions.contains(nameplate + "-") {
            try h.refreshNameplates()
            try await Task.sleep(nanoseconds: 50_000_000)
            completions = try h.getNameplateCompletions(prefix: String(nameplate.prefix(1)))
        }
        try h.chooseNameplate(nameplate: nameplate)
        try await h.whenWordlistIsAvailable()
        try h.chooseWords(words: String(code.dropFirst(nameplate.count + 1)))
        let got = try await b.getCode()
        XCTAssertEqual(got, code)
        a.cancel()
        b.cancel()
    }

    func testFileTransfer() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("wormhole-swift-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let src = dir.appendingPathComponent("data.bin")
        let bytes = Data((0..<1_000_003).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        try bytes.write(to: src)
        let a = try Wormhole(appid: transferAppid(), relayUrl: Self.url, options: WormholeOptions())
        let b = try Wormhole(appid: transferAppid(), relayUrl: Self.url, options: WormholeOptions())
        try a.allocateCode(length: 2)
        try b.setCode(code: try await a.getCode())
        async let sending: Void = a.sendFile(path: src.path, settings: TransferSettings(), progress: nil)
        guard case let .offer(offer) = try await b.receiveOffer(settings: TransferSettings()) else {
            return XCTFail("expected an offer")
        }
        XCTAssertEqual(offer.name(), "data.bin")
        XCTAssertEqual(offer.transferSize(), UInt64(bytes.count))
        let out = dir.appendingPathComponent("received.bin")
        let path = try await offer.accept(destination: out.path, overwrite: false, progress: nil)
        try await sending
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), bytes)
        a.cancel()
        b.cancel()
    }

    func testReferenceCliInterop() async throws {
        guard let venv = ProcessInfo.processInfo.environment["WORMHOLE_REF_VENV"] else {
            return XCTFail("WORMHOLE_REF_VENV is not set")
        }
        let sender = Process()
        sender.executableURL = URL(fileURLWithPath: venv + "/bin/wormhole")
        sender.arguments = ["--relay-url", Self.url, "send", "--text", "hello swift", "--code", "7-purple-sausages"]
        sender.standardOutput = FileHandle.nullDevice
        sender.standardError = FileHandle.nullDevice
        try sender.run()
        let w = try Wormhole(appid: transferAppid(), relayUrl: Self.url, options: WormholeOptions())
        try w.setCode(code: "7-purple-sausages")
        let text = try await w.receiveText()
        XCTAssertEqual(text, "hello swift")
        try await w.shutdown()
        sender.waitUntilExit()
        XCTAssertEqual(sender.terminationStatus, 0)
    }
}
