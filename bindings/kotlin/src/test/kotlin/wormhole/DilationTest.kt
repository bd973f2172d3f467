package wormhole

import java.io.BufferedReader
import java.io.File
import java.io.InputStreamReader
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger
import java.util.concurrent.LinkedBlockingQueue
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.delay
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withContext
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.assertThrows

/**
 * Dilation from Kotlin: subchannels with suspend send/recv between two of our wormholes
 * (records whole, backpressure, status), and against the reference library 0.24
 * (tests/scripts/ref_dilate.py) both ways, through our wormhole-server on 127.0.0.1.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class DilationTest {
    private lateinit var server: Process
    private lateinit var url: String
    private val limit = 120_000L
    private val appid = "lothar.com/wormhole/dilation-kotlin-test"
    private val sizes = listOf(0, 1, 5, 65509, 65510, 65519, 65520, 200000, 1 shl 20, 0)

    @BeforeAll
    fun startServer() {
        val bin = System.getenv("WORMHOLE_SERVER_BIN") ?: error("WORMHOLE_SERVER_BIN is not set")
        server = ProcessBuilder(bin, "mailbox", "--listen", "127.0.0.1:0", "--db", ":memory:")
            .redirectOutput(ProcessBuilder.Redirect.DISCARD).start()
        val err = BufferedReader(InputStreamReader(server.errorStream))
        while (true) {
            val line = err.readLine() ?: error("wormhole-server exited before it was ready")
            val m = Regex("(ws://\\S+/v1)").find(line) ?: continue
            url = m.groupValues[1]
            break
        }
        Thread { err.lineSequence().forEach { } }.apply { isDaemon = true }.start()
    }

    @AfterAll
    fun stop() {
        server.destroy()
        server.waitFor(10, TimeUnit.SECONDS)
    }

    private fun pattern(i: Int, n: Int) = ByteArray(n) { j -> (i * 31 + j).toByte() }

    private fun dilating() = Wormhole(appid, url, WormholeOptions(dilation = true))

    @Test
    fun `two of our wormholes echo records of every size and push back`(): Unit = runBlocking {
        withTimeout(limit) {
            val a = dilating()
            val b = dilating()
            a.allocateCode(2u)
            b.setCode(a.getCode())
            val da = a.dilate(DilationOptions())
            val db = b.dilate(DilationOptions())
            // A Dilation delegate needs a delegated wormhole; a name is listened for once.
            assertThrows<WormholeException.InvalidArgument> {
                a.dilate(DilationOptions(), object : DilationDelegate {
                    override fun onStatus(status: DilationStatus) {}
                })
            }
            val echo = da.listen("echo")
            assertThrows<WormholeException.InvalidState> { da.listen("echo") }
            val server = launch {
                val s = echo.accept()!!
                while (true) {
                    val r = s.recv() ?: break
                    s.send(r)
                }
                s.shutdown()
            }
            val s = db.connect("echo")
            for ((i, n) in sizes.withIndex()) s.send(pattern(i, n))
            for ((i, n) in sizes.withIndex()) assertArrayEquals(pattern(i, n), s.recv())
            s.shutdown()
            assertNull(s.recv())
            server.join()

            // Status: the first generation (with our role), then connected.
            val first = da.nextStatus()
            assertTrue(first is DilationStatus.Generation && first.generation == 1u, "$first")
            var st = da.nextStatus()
            while (st !is DilationStatus.Connected) st = da.nextStatus()

            // Backpressure: nobody reads "slow", so send suspends once the windows are
            // full; the records all arrive, in order, once it is read.
            val slow = db.connect("slow")
            val sent = AtomicInteger(0)
            val writer = launch {
                repeat(96) { i ->
                    slow.send(pattern(i, 1 shl 20))
                    sent.incrementAndGet()
                }
                slow.shutdown()
            }
            delay(3000)
            assertTrue(sent.get() < 96, "send never suspended: ${sent.get()} records sent")
            val listener = da.listen("slow")
            val t = listener.accept()!!
            for (i in 0 until 96) assertArrayEquals(pattern(i, 1 shl 20), t.recv(), "record $i")
            assertNull(t.recv())
            writer.join()
            assertEquals(96, sent.get())
            a.shutdown()
            b.shutdown()
            a.close()
            b.close()
        }
    }

    class Statuses : DilationDelegate {
        val seen = CopyOnWriteArrayList<DilationStatus>()
        override fun onStatus(status: DilationStatus) { seen.add(status) }
    }

    class Codes : WormholeDelegate {
        val codes = LinkedBlockingQueue<String>()
        override fun onWelcome(welcomeJson: String) {}
        override fun onCode(code: String) { codes.add(code) }
        override fun onUnverifiedKey(key: ByteArray) {}
        override fun onVerifier(verifier: ByteArray) {}
        override fun onVersions(versionsJson: String) {}
        override fun onMessage(message: ByteArray) {}
        override fun onClosed(outcome: Outcome) {}
    }

    @Test
    fun `a delegated wormhole reports Dilation status to its delegate`(): Unit = runBlocking {
        withTimeout(limit) {
            val codes = Codes()
            val statuses = Statuses()
            val a = Wormhole.withDelegate(appid, url, WormholeOptions(dilation = true), codes)
            a.allocateCode(2u)
            val code = withContext(Dispatchers.IO) { codes.codes.poll(60, TimeUnit.SECONDS) }
                ?: error("no code")
            val b = dilating()
            b.setCode(code)
            val da = a.dilate(DilationOptions(), statuses)
            val db = b.dilate(DilationOptions())
            val l = db.listen("x")
            val s = da.connect("x")
            s.send("from a delegated wormhole".toByteArray())
            assertArrayEquals("from a delegated wormhole".toByteArray(), l.accept()!!.recv())
            while (statuses.seen.none { it is DilationStatus.Connected }) delay(20)
            val first = statuses.seen.first()
            assertTrue(first is DilationStatus.Generation && first.generation == 1u, "$first")
            // The status went to the delegate, not to nextStatus.
            assertNull(da.nextStatus())
            b.shutdown()
            a.close()
            b.close()
        }
    }

    /** The reference library running ref_dilate.py, its JSON lines on `out`. */
    private class Ref(val p: Process) {
        val out = p.inputStream.bufferedReader()
        val said = mutableListOf<String>()
        suspend fun expect(key: String): String = withContext(Dispatchers.IO) {
            while (true) {
                val line = out.readLine() ?: error("the reference ended; it said $said")
                said.add(line)
                if (line.contains("\"error\"")) error("the reference failed: $line")
                if (line.contains("\"$key\"")) return@withContext line
            }
            @Suppress("UNREACHABLE_CODE")
            error("unreachable")
        }
        fun code(line: String) = Regex("\"code\": \"([^\"]+)\"").find(line)!!.groupValues[1]
        /** Close its stdin: it closes its wormhole and exits. */
        fun finish() {
            p.outputStream.close()
            assertTrue(p.waitFor(60, TimeUnit.SECONDS))
        }
    }

    private fun ref(vararg args: String): Ref {
        val venv = System.getenv("WORMHOLE_REF_VENV") ?: error("WORMHOLE_REF_VENV is not set")
        val script = File(System.getProperty("user.dir"), "../../tests/scripts/ref_dilate.py").canonicalPath
        return Ref(
            ProcessBuilder("$venv/bin/python", script, url, appid, *args)
                .redirectError(ProcessBuilder.Redirect.DISCARD).start(),
        )
    }

    @Test
    fun `we open the reference's subchannels`(): Unit = runBlocking {
        withTimeout(limit) {
            val r = ref("--allocate", "serve")
            val w = dilating()
            w.setCode(r.code(r.expect("code")))
            val d = w.dilate(DilationOptions())
            // 8 subchannels to its echo at once, records of every size on each.
            val subs = (0 until 8).map { d.connect("echo") }
            val checks = subs.mapIndexed { k, s ->
                async {
                    for ((i, n) in sizes.withIndex()) s.send(pattern(i + 10 * k, n))
                    for ((i, n) in sizes.withIndex()) assertArrayEquals(pattern(i + 10 * k, n), s.recv())
                    s.shutdown()
                }
            }
            checks.forEach { it.await() }
            r.expect("dilated")
            w.shutdown()
            w.close()
            r.finish()
        }
    }

    @Test
    fun `the reference opens ours`(): Unit = runBlocking {
        withTimeout(limit) {
            val w = dilating()
            w.allocateCode(2u)
            val r = ref("--code", w.getCode(), "client")
            val d = w.dilate(DilationOptions())
            var st = d.nextStatus()
            while (st !is DilationStatus.Connected) st = d.nextStatus()
            // Listening only now: its "late" subchannel was opened (and written) before.
            val late = d.listen("late")
            val echo = d.listen("echo")
            val echoed = AtomicInteger(0)
            val server = launch {
                while (true) {
                    val s = echo.accept() ?: break
                    launch {
                        // Ends when the reference closes the subchannel, or (an error)
                        // when the wormhole is cancelled at the end of the test.
                        runCatching {
                            while (true) {
                                val rec = s.recv() ?: break
                                s.send(rec)
                                echoed.incrementAndGet()
                            }
                        }
                    }
                }
            }
            assertArrayEquals("sent before the listener".toByteArray(), late.accept()!!.recv())
            r.expect("ok")
            assertTrue(echoed.get() >= sizes.size + 64, "echoed ${echoed.get()}")
            r.finish()
            w.cancel()
            server.join()
            w.close()
        }
    }
}
