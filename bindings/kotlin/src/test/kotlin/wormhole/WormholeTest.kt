package wormhole

import java.io.BufferedReader
import java.io.File
import java.io.InputStreamReader
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.assertThrows

/**
 * Real exchanges from Kotlin through libwormhole against our wormhole-server on 127.0.0.1
 * ($WORMHOLE_SERVER_BIN), and interop with the reference CLI ($WORMHOLE_REF_VENV).
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class WormholeTest {
    private lateinit var server: Process
    private lateinit var url: String
    private val appid = "dev.wormhole/kotlin-test"
    private val limit = 60_000L

    @BeforeAll
    fun startServer() {
        val bin = System.getenv("WORMHOLE_SERVER_BIN")
            ?: error("WORMHOLE_SERVER_BIN is not set (run scripts/test.sh)")
        server = ProcessBuilder(bin, "mailbox", "--listen", "127.0.0.1:0", "--db", ":memory:")
            .redirectOutput(ProcessBuilder.Redirect.DISCARD)
            .start()
        val err = BufferedReader(InputStreamReader(server.errorStream))
        var found: String? = null
        while (found == null) {
            val line = err.readLine() ?: error("wormhole-server exited before it was ready")
            found = Regex("mailbox ready: (ws://\\S+/v1)").find(line)?.groupValues?.get(1)
        }
        url = found
        // Keep draining its stderr so it never blocks.
        Thread { err.lineSequence().forEach { } }.apply { isDaemon = true }.start()
    }

    @AfterAll
    fun stopServer() {
        server.destroy()
        server.waitFor(10, TimeUnit.SECONDS)
    }

    private fun open(options: WormholeOptions = WormholeOptions()) = Wormhole(appid, url, options)

    @Test
    fun `allocate, set code, verifier, messages both ways, happy close`(): Unit = runBlocking {
        withTimeout(limit) {
            open().use { a ->
                open().use { b ->
                    a.allocateCode(2u)
                    val code = a.getCode()
                    assertTrue(Regex("^\\d+-\\w+-\\w+$").matches(code), code)
                    b.setCode(code)
                    assertEquals(code, b.getCode())
                    a.sendMessage("from a".toByteArray())
                    b.sendMessage("from b".toByteArray())
                    assertEquals("from b", String(a.getMessage()))
                    assertEquals("from a", String(b.getMessage()))
                    val va = a.getVerifier()
                    assertEquals(32, va.size)
                    assertArrayEquals(va, b.getVerifier())
                    assertArrayEquals(a.getUnverifiedKey(), b.getUnverifiedKey())
                    assertArrayEquals(a.deriveKey("purpose", 16u), b.deriveKey("purpose", 16u))
                    assertFalse(a.deriveKey("x", 32u).contentEquals(a.deriveKey("y", 32u)))
                    assertTrue(a.getWelcome().startsWith("{"))
                    assertEquals("{}", a.getVersions())
                    coroutineScope {
                        listOf(async { a.shutdown() }, async { b.shutdown() }).awaitAll()
                    }
                }
            }
        }
    }

    @Test
    fun `app versions reach the peer, bad JSON is refused`(): Unit = runBlocking {
        withTimeout(limit) {
            open(WormholeOptions(appVersionsJson = """{"kotlin": 1}""")).use { a ->
                open().use { b ->
                    a.allocateCode(2u)
                    b.setCode(a.getCode())
                    assertEquals("""{"kotlin":1}""", b.getVersions())
                    a.cancel()
                    b.cancel()
                }
            }
        }
        assertThrows<WormholeException.InvalidArgument> {
            open(WormholeOptions(appVersionsJson = "[1, 2]"))
        }
        assertThrows<WormholeException.InvalidArgument> {
            open(WormholeOptions(appVersionsJson = "{nope"))
        }
        Unit
    }

    @Test
    fun `a SOCKS5 proxy is used, and a malformed one refused`(): Unit = runBlocking {
        // The server is reachable but the proxy is not: the failure names the proxy, so the
        // connection went to it.
        withTimeout(limit) {
            open(WormholeOptions(connectTimeoutMs = 5000u, socks5 = "127.0.0.1:1")).use { w ->
                val e = assertThrows<WormholeException.ServerConnection> { runBlocking { w.getWelcome() } }
                assertTrue(e.message!!.contains("SOCKS5 proxy 127.0.0.1:1"), e.message)
            }
        }
        for (bad in listOf("nohost", "http://127.0.0.1:1080", "127.0.0.1:0")) {
            assertThrows<WormholeException.InvalidArgument> { open(WormholeOptions(socks5 = bad)) }
        }
        Unit
    }

    /** A free TCP port on 127.0.0.1. */
    private fun freePort(): Int = java.net.ServerSocket(0).use { it.localPort }

    @Test
    fun `findTor reads a real tor's control port, and a wormhole goes through it`(): Unit = runBlocking {
        // A real tor (Debian's) with its network disabled: its control port works, and
        // connections to its SOCKS port fail, naming it.
        val dir = kotlin.io.path.createTempDirectory("kotlin-tor").toFile()
        val (socks, control) = freePort() to freePort()
        val torrc = File(dir, "torrc")
        torrc.writeText(
            "DataDirectory ${dir.path}/data\nDisableNetwork 1\nSocksPort 127.0.0.1:$socks\n" +
                "ControlPort 127.0.0.1:$control\nCookieAuthentication 1\n"
        )
        val bin = listOf("/usr/bin/tor", "/usr/sbin/tor").firstOrNull { File(it).exists() }
            ?: error("tor is not installed (scripts/setup-peers.sh installs it)")
        val tor = ProcessBuilder(bin, "-f", torrc.path)
            .redirectOutput(ProcessBuilder.Redirect.DISCARD)
            .redirectError(ProcessBuilder.Redirect.DISCARD)
            .start()
        try {
            withTimeout(limit) {
                var handle: Tor? = null
                while (handle == null) {
                    handle = try {
                        findTor(TorSettings(controlPort = "tcp:127.0.0.1:$control"))
                    } catch (e: WormholeException.InvalidArgument) {
                        delay(100) // not listening yet
                        null
                    }
                }
                assertEquals("127.0.0.1:$socks", handle.socksAddress())
                assertEquals("control-port", handle.found())
                Wormhole(
                    appid,
                    "ws://mailbox.example.org:4000/v1",
                    WormholeOptions(connectTimeoutMs = 5000u, tor = handle),
                ).use { w ->
                    val e = assertThrows<WormholeException.ServerConnection> { runBlocking { w.getWelcome() } }
                    assertTrue(e.message!!.contains("SOCKS5 proxy 127.0.0.1:$socks"), e.message)
                }
                // A numeric mailbox host is refused, like the reference.
                assertThrows<WormholeException.InvalidArgument> {
                    Wormhole(appid, url, WormholeOptions(tor = handle))
                }
            }
        } finally {
            tor.destroy()
            tor.waitFor(10, TimeUnit.SECONDS)
            dir.deleteRecursively()
        }
        Unit
    }

    @Test
    fun `wrong code gives WrongPassword`(): Unit = runBlocking {
        withTimeout(limit) {
            open().use { a ->
                open().use { b ->
                    a.allocateCode(2u)
                    val code = a.getCode()
                    b.setCode(code.substringBefore('-') + "-wrong-words")
                    a.sendMessage("x".toByteArray())
                    b.sendMessage("y".toByteArray())
                    val e = assertThrows<WormholeException.WrongPassword> { runBlocking { b.getMessage() } }
                    assertTrue(e.message!!.isNotEmpty())
                    assertThrows<WormholeException.WrongPassword> { runBlocking { a.getMessage() } }
                }
            }
        }
    }

    @Test
    fun `bad codes are refused before any network`() {
        assertThrows<WormholeException.InvalidCode> { validateCode("4 purple sausages") }
        assertThrows<WormholeException.InvalidCode> { validateCode("purple-sausages") }
        validateCode("4-purple-sausages")
        assertEquals(2u, defaultCodeLength())
        open().use { w ->
            assertThrows<WormholeException.InvalidCode> { w.setCode("x-purple") }
            w.setCode("4-purple-sausages")
            assertThrows<WormholeException.OnlyOneCode> { w.allocateCode(2u) }
            assertThrows<WormholeException.NoKey> { w.deriveKey("p", 32u) }
            w.cancel()
        }
    }

    @Test
    fun `cancel fails pending calls with Cancelled`(): Unit = runBlocking {
        withTimeout(limit) {
            open().use { w ->
                w.allocateCode(2u)
                w.getCode()
                val pending = async { runCatching { w.getMessage() } }
                delay(200)
                w.cancel()
                val e = pending.await().exceptionOrNull()
                assertTrue(e is WormholeException.Cancelled, "got $e")
            }
        }
    }

    @Test
    fun `wormholes dropped without close are released by the GC`(): Unit = runBlocking {
        withTimeout(limit) {
            // Open wormholes (with codes on the server) and drop them unclosed.
            repeat(20) {
                val w = open()
                w.allocateCode(2u)
                w.getCode()
            }
            repeat(5) {
                System.gc()
                delay(100)
            }
            // The library still works afterwards.
            open().use { a ->
                open().use { b ->
                    a.allocateCode(2u)
                    b.setCode(a.getCode())
                    a.sendMessage("after gc".toByteArray())
                    assertEquals("after gc", String(b.getMessage()))
                    a.cancel()
                    b.cancel()
                }
            }
        }
    }

    @Test
    fun `a lonely close says Lonely`(): Unit = runBlocking {
        withTimeout(limit) {
            open().use { w ->
                w.allocateCode(2u)
                w.getCode()
                assertThrows<WormholeException.Lonely> { runBlocking { w.shutdown() } }
            }
        }
    }

    @Test
    fun `many wormholes at once`(): Unit = runBlocking {
        withTimeout(120_000) {
            (0 until 25).map { i ->
                async {
                    open().use { a ->
                        open().use { b ->
                            a.allocateCode(2u)
                            b.setCode(a.getCode())
                            a.sendMessage("a$i".toByteArray())
                            b.sendMessage("b$i".toByteArray())
                            assertEquals("b$i", String(a.getMessage()))
                            assertEquals("a$i", String(b.getMessage()))
                            listOf(async { a.shutdown() }, async { b.shutdown() }).awaitAll()
                        }
                    }
                }
            }.awaitAll()
        }
        Unit
    }

    /** Records every delegate call, in order, and whether two ever overlapped. */
    class Recorder : WormholeDelegate {
        val events = LinkedBlockingQueue<String>()
        private val active = java.util.concurrent.atomic.AtomicInteger(0)
        @Volatile var overlapped = false
        private fun rec(s: String) {
            if (active.incrementAndGet() != 1) overlapped = true
            Thread.sleep(2)
            events.add(s)
            active.decrementAndGet()
        }
        override fun onWelcome(welcomeJson: String) = rec("welcome")
        override fun onCode(code: String) = rec("code $code")
        override fun onUnverifiedKey(key: ByteArray) = rec("key ${key.size}")
        override fun onVerifier(verifier: ByteArray) = rec("verifier ${verifier.size}")
        override fun onVersions(versionsJson: String) = rec("versions $versionsJson")
        override fun onMessage(message: ByteArray) = rec("message ${String(message)}")
        override fun onClosed(outcome: Outcome) =
            rec("closed ${outcome.happy} ${outcome.errorKind}")

        fun next(): String = events.poll(60, TimeUnit.SECONDS) ?: error("no delegate event")
        fun until(prefix: String): List<String> {
            val seen = mutableListOf<String>()
            while (true) {
                val e = next()
                seen.add(e)
                if (e.startsWith(prefix)) return seen
            }
        }
    }

    @Test
    fun `delegated mode delivers every event in order, one at a time`(): Unit = runBlocking {
        val da = Recorder()
        val db = Recorder()
        val a = Wormhole.withDelegate(appid, url, WormholeOptions(), da)
        val b = Wormhole.withDelegate(appid, url, WormholeOptions(), db)
        a.allocateCode(2u)
        val code = da.until("code").last().removePrefix("code ")
        b.setCode(code)
        a.sendMessage("hi b".toByteArray())
        b.sendMessage("hi a".toByteArray())
        val seenA = da.until("message")
        assertEquals("message hi a", seenA.last())
        assertTrue(seenA.any { it == "key 32" } && seenA.any { it == "verifier 32" }, "$seenA")
        assertTrue(seenA.indexOf("key 32") < seenA.indexOf("verifier 32"))
        assertEquals("message hi b", db.until("message").last())
        withTimeout(limit) {
            listOf(async { a.shutdown() }, async { b.shutdown() }).awaitAll()
        }
        assertEquals("closed true null", da.until("closed").last())
        assertEquals("closed true null", db.until("closed").last())
        assertFalse(da.overlapped || db.overlapped, "delegate calls overlapped")
        a.close()
        b.close()
    }

    @Test
    fun `a throwing delegate does not stop delivery`(): Unit = runBlocking {
        val events = LinkedBlockingQueue<String>()
        val d = object : WormholeDelegate {
            override fun onWelcome(welcomeJson: String) = throw IllegalStateException("boom")
            override fun onCode(code: String) { events.add("code"); throw RuntimeException("boom") }
            override fun onUnverifiedKey(key: ByteArray) {}
            override fun onVerifier(verifier: ByteArray) {}
            override fun onVersions(versionsJson: String) {}
            override fun onMessage(message: ByteArray) {}
            override fun onClosed(outcome: Outcome) { events.add("closed ${outcome.errorKind}") }
        }
        val w = Wormhole.withDelegate(appid, url, WormholeOptions(), d)
        w.allocateCode(2u)
        assertEquals("code", events.poll(60, TimeUnit.SECONDS))
        w.cancel()
        assertEquals("closed ${ErrorKind.CANCELLED}", events.poll(60, TimeUnit.SECONDS))
        w.close()
    }

    @Test
    fun `input helper completes nameplates from the server and words`(): Unit = runBlocking {
        withTimeout(limit) {
            open().use { a ->
                open().use { b ->
                    a.allocateCode(2u)
                    val code = a.getCode()
                    val nameplate = code.substringBefore('-')
                    val h = b.inputCode()
                    assertThrows<WormholeException.MustChooseNameplateFirst> { h.getWordCompletions("pu") }
                    var completions: List<String> = emptyList()
                    while ("$nameplate-" !in completions) {
                        h.refreshNameplates()
                        delay(50)
                        completions = h.getNameplateCompletions(nameplate.take(1))
                    }
                    h.chooseNameplate(nameplate)
                    assertThrows<WormholeException.AlreadyChoseNameplate> { h.chooseNameplate(nameplate) }
                    h.whenWordlistIsAvailable()
                    val words = code.substringAfter('-')
                    assertTrue(h.getWordCompletions(words.take(2)).any { words.startsWith(it.substringBefore('-')) })
                    h.chooseWords(words)
                    assertThrows<WormholeException.AlreadyChoseWords> { h.chooseWords(words) }
                    assertEquals(code, b.getCode())
                    a.sendMessage("ok".toByteArray())
                    assertEquals("ok", String(b.getMessage()))
                    a.cancel()
                    b.cancel()
                }
            }
        }
    }

    @Test
    fun `the example program sends to the reference CLI and receives from itself`(): Unit = runBlocking {
        val venv = System.getenv("WORMHOLE_REF_VENV") ?: error("WORMHOLE_REF_VENV is not set")
        val lines = LinkedBlockingQueue<String>()
        val sender = Thread { lines.add("exit " + wormhole.examples.run(listOf("send", url, "via the example")) { lines.add(it) }) }
        sender.start()
        val codeLine = lines.poll(60, TimeUnit.SECONDS) ?: error("no code from the example")
        val code = codeLine.removePrefix("Wormhole code is: ")
        val receiver = ProcessBuilder("$venv/bin/wormhole", "--relay-url", url, "receive", "--only-text", code)
            .redirectError(ProcessBuilder.Redirect.DISCARD).start()
        val printed = receiver.inputStream.bufferedReader().readText()
        assertTrue(receiver.waitFor(60, TimeUnit.SECONDS))
        assertEquals("via the example\n", printed)
        sender.join(60_000)
        assertEquals(listOf("text message sent", "exit 0"), lines.toList())
        val usage = mutableListOf<String>()
        assertEquals(2, wormhole.examples.run(listOf("bogus")) { usage.add(it) })
        assertTrue(usage.single().startsWith("usage:"))
    }

    @Test
    fun `receives a text sent by the reference CLI 0_24_0`(): Unit = runBlocking {
        val venv = System.getenv("WORMHOLE_REF_VENV") ?: error("WORMHOLE_REF_VENV is not set")
        val code = "7-purple-sausages"
        val text = "hello from the reference CLI ✓"
        val sender = ProcessBuilder(
            "$venv/bin/wormhole", "--relay-url", url, "send", "--text", text, "--code", code,
        ).redirectErrorStream(true).redirectOutput(File("/dev/null")).start()
        try {
            withTimeout(limit) {
                Wormhole(transferAppid(), url, WormholeOptions()).use { w ->
                    w.setCode(code)
                    assertEquals(text, w.receiveText())
                    w.shutdown()
                }
            }
            assertTrue(sender.waitFor(60, TimeUnit.SECONDS), "the reference sender did not exit")
            assertEquals(0, sender.exitValue())
        } finally {
            sender.destroyForcibly()
        }
    }

    @Test
    fun `a suspended wormhole goes on from its String, the reference CLI notices nothing`(): Unit = runBlocking {
        val venv = System.getenv("WORMHOLE_REF_VENV") ?: error("WORMHOLE_REF_VENV is not set")
        val first = Recorder()
        val a = Wormhole.withDelegate(transferAppid(), url, WormholeOptions(), first)
        a.allocateCode(2u)
        val code = first.until("code").last().removePrefix("code ")
        val receiver = ProcessBuilder("$venv/bin/wormhole", "--relay-url", url, "receive", "--only-text", code)
            .redirectError(ProcessBuilder.Redirect.DISCARD).start()
        try {
            // As an app the OS sends to the background: save to a String and stop, without
            // releasing anything on the server.
            val saved: String = a.suspend()
            assertTrue(saved.startsWith("{") && saved.contains("serialized wormhole"))
            assertThrows<WormholeException.Closed> { a.sendMessage("too late".toByteArray()) }
            a.close()
            delay(1000)
            assertTrue(first.events.none { it.startsWith("closed") }, "${first.events}")
            // Back again (the String could have come from app storage in a new process).
            val second = Recorder()
            val b = Wormhole.fromSerialized(saved, WormholeOptions(), second)
            b.sendMessage("""{"offer":{"message":"after a suspend"}}""".toByteArray())
            val answer = second.until("message").last()
            assertTrue(answer.contains("message_ack"), answer)
            withTimeout(limit) { b.shutdown() }
            assertEquals("closed true null", second.until("closed").last())
            b.close()
            val printed = receiver.inputStream.bufferedReader().readText()
            assertTrue(receiver.waitFor(60, TimeUnit.SECONDS))
            assertEquals("after a suspend\n", printed)
            assertEquals(0, receiver.exitValue())
            // Damaged or foreign data: a clear error, never a crash.
            for (bad in listOf("", "not json", "{}", saved.replace("\"version\"", "\"versions\""))) {
                assertThrows<WormholeException.InvalidArgument> {
                    Wormhole.fromSerialized(bad, WormholeOptions(), Recorder())
                }
            }
        } finally {
            receiver.destroyForcibly()
        }
    }
}
