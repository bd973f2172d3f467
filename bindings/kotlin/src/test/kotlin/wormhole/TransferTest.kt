package wormhole

import java.io.BufferedReader
import java.io.File
import java.io.InputStreamReader
import java.nio.file.Files
import java.security.MessageDigest
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.TimeUnit
import kotlin.random.Random
import kotlinx.coroutines.async
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
 * Files and directories from Kotlin, through our wormhole-server (mailbox and relay) on
 * 127.0.0.1, and with the reference CLI 0.24.0 in both directions.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class TransferTest {
    private lateinit var server: Process
    private lateinit var url: String
    private lateinit var relay: String
    private val limit = 120_000L
    private val scratch: File = Files.createTempDirectory("wormhole-kt").toFile()

    @BeforeAll
    fun startServer() {
        val bin = System.getenv("WORMHOLE_SERVER_BIN") ?: error("WORMHOLE_SERVER_BIN is not set")
        server = ProcessBuilder(
            bin, "all", "--mailbox-listen", "127.0.0.1:0", "--relay-listen", "127.0.0.1:0", "--db", ":memory:",
        ).redirectOutput(ProcessBuilder.Redirect.DISCARD).start()
        val err = BufferedReader(InputStreamReader(server.errorStream))
        var mailbox: String? = null
        var tcp: String? = null
        while (mailbox == null || tcp == null) {
            val line = err.readLine() ?: error("wormhole-server exited before it was ready")
            Regex("mailbox ready: (ws://\\S+/v1)").find(line)?.let { mailbox = it.groupValues[1] }
            Regex("relay ready: (tcp:\\S+)").find(line)?.let { tcp = it.groupValues[1] }
        }
        url = mailbox!!
        relay = tcp!!
        Thread { err.lineSequence().forEach { } }.apply { isDaemon = true }.start()
    }

    @AfterAll
    fun stop() {
        server.destroy()
        server.waitFor(10, TimeUnit.SECONDS)
        scratch.deleteRecursively()
    }

    private fun dir(name: String) = File(scratch, name).apply { mkdirs() }

    private fun sha(f: File) = MessageDigest.getInstance("SHA-256").digest(f.readBytes())

    private fun pair(): Pair<Wormhole, Wormhole> {
        val a = Wormhole(transferAppid(), url, WormholeOptions())
        val b = Wormhole(transferAppid(), url, WormholeOptions())
        return a to b
    }

    class Progress : TransferProgress {
        val reports = CopyOnWriteArrayList<Pair<ULong, ULong>>()
        override fun onProgress(done: ULong, total: ULong) { reports.add(done to total) }
    }

    private fun offerOf(i: Incoming): IncomingOffer = when (i) {
        is Incoming.Offer -> i.offer
        is Incoming.Text -> error("expected an offer, got text ${i.text}")
    }

    @Test
    fun `file through the relay, with progress`(): Unit = runBlocking {
        val src = File(dir("send1"), "data.bin").apply { writeBytes(Random(1).nextBytes(3 * 1024 * 1024 + 7)) }
        val out = dir("recv1")
        val (a, b) = pair()
        withTimeout(limit) {
            a.allocateCode(2u)
            b.setCode(a.getCode())
            // Forced through our relay: neither side listens.
            val settings = TransferSettings(transitRelay = relay, noListen = true)
            val sent = Progress()
            val sending = async { a.sendFile(src.path, settings, sent) }
            val offer = offerOf(b.receiveOffer(settings))
            assertEquals("data.bin", offer.name())
            assertEquals(src.length().toULong(), offer.transferSize())
            assertFalse(offer.isDirectory())
            val got = Progress()
            val path = offer.accept(File(out, offer.name()).path, false, got)
            sending.await()
            assertArrayEquals(sha(src), sha(File(path)))
            assertEquals(src.length().toULong() to src.length().toULong(), got.reports.last())
            assertTrue(sent.reports.isNotEmpty())
            a.shutdown()
            b.shutdown()
        }
        a.close(); b.close()
    }

    @Test
    fun `directory and empty file, direct`(): Unit = runBlocking {
        val root = dir("send2/tree")
        File(root, "a/b").mkdirs()
        File(root, "empty-dir").mkdirs()
        File(root, "a/b/c.txt").writeText("nested")
        File(root, "top.txt").writeText("top")
        File(root, "zero").writeBytes(ByteArray(0))
        val out = dir("recv2")
        val (a, b) = pair()
        withTimeout(limit) {
            a.allocateCode(2u)
            b.setCode(a.getCode())
            val sending = async { a.sendFile(root.path, TransferSettings(), null) }
            val offer = offerOf(b.receiveOffer(TransferSettings()))
            assertTrue(offer.isDirectory())
            assertEquals("tree", offer.name())
            val path = File(offer.accept(File(out, "tree").path, false, null))
            sending.await()
            assertEquals("nested", File(path, "a/b/c.txt").readText())
            assertEquals("top", File(path, "top.txt").readText())
            assertEquals(0, File(path, "zero").length())
            a.cancel(); b.cancel()
        }
        // An empty file on its own.
        val empty = File(dir("send3"), "nothing").apply { writeBytes(ByteArray(0)) }
        val (c, d) = pair()
        withTimeout(limit) {
            c.allocateCode(2u)
            d.setCode(c.getCode())
            val sending = async { c.sendFile(empty.path, TransferSettings(), null) }
            val offer = offerOf(d.receiveOffer(TransferSettings()))
            assertEquals(0uL, offer.transferSize())
            val path = File(offer.accept(File(out, "nothing").path, false, null))
            sending.await()
            assertTrue(path.isFile && path.length() == 0L)
            c.cancel(); d.cancel()
        }
        a.close(); b.close(); c.close(); d.close()
    }

    @Test
    fun `reject, no overwrite, answered twice`(): Unit = runBlocking {
        val src = File(dir("send4"), "f.txt").apply { writeText("x") }
        val existing = File(dir("recv4"), "f.txt").apply { writeText("keep me") }
        val (a, b) = pair()
        withTimeout(limit) {
            a.allocateCode(2u)
            b.setCode(a.getCode())
            val sending = async { runCatching { a.sendFile(src.path, TransferSettings(), null) } }
            val offer = offerOf(b.receiveOffer(TransferSettings()))
            assertThrows<WormholeException.Transfer> { runBlocking { offer.accept(existing.path, false, null) } }
            assertEquals("keep me", existing.readText())
            assertThrows<WormholeException.InvalidArgument> { offer.reject() }
            val e = sending.await().exceptionOrNull()
            assertTrue(e is WormholeException.Transfer, "sender got $e")
            a.cancel(); b.cancel()
        }
        val (c, d) = pair()
        withTimeout(limit) {
            c.allocateCode(2u)
            d.setCode(c.getCode())
            val sending = async { runCatching { c.sendFile(src.path, TransferSettings(), null) } }
            offerOf(d.receiveOffer(TransferSettings())).reject()
            val e = sending.await().exceptionOrNull()
            assertTrue(e is WormholeException.Transfer && e.message!!.contains("rejected"), "sender got $e")
            c.cancel(); d.cancel()
        }
        a.close(); b.close(); c.close(); d.close()
    }

    @Test
    fun `cancelling the receiver mid-transfer fails both sides and leaves no file`(): Unit = runBlocking {
        val src = File(dir("send5"), "big.bin").apply { writeBytes(Random(5).nextBytes(64 * 1024 * 1024)) }
        val out = dir("recv5")
        val (a, b) = pair()
        withTimeout(limit) {
            a.allocateCode(2u)
            b.setCode(a.getCode())
            val sending = async { runCatching { a.sendFile(src.path, TransferSettings(), null) } }
            val offer = offerOf(b.receiveOffer(TransferSettings()))
            val started = kotlinx.coroutines.CompletableDeferred<Unit>()
            val slow = object : TransferProgress {
                override fun onProgress(done: ULong, total: ULong) {
                    started.complete(Unit)
                    Thread.sleep(20)
                }
            }
            val receiving = async { runCatching { offer.accept(File(out, "big.bin").path, false, slow) } }
            started.await()
            b.cancelTransfer()
            val r = receiving.await().exceptionOrNull()
            assertTrue(r is WormholeException.Cancelled, "receiver got $r")
            assertTrue(sending.await().isFailure, "the sender must fail too")
            delay(200)
            assertEquals(emptyList<String>(), out.list()!!.toList(), "no file may be left behind")
            a.cancel(); b.cancel()
        }
        a.close(); b.close()
    }

    @Test
    fun `bad arguments`(): Unit = runBlocking {
        val (a, b) = pair()
        assertThrows<WormholeException.InvalidArgument> {
            runBlocking { a.sendFile("/nonexistent", TransferSettings(transitRelay = "udp:nope"), null) }
        }
        a.allocateCode(2u)
        b.setCode(a.getCode())
        assertThrows<WormholeException.InvalidArgument> {
            runBlocking { withTimeout(limit) { a.sendFile(File(scratch, "missing").path, TransferSettings(), null) } }
        }
        a.cancel(); b.cancel(); a.close(); b.close()
    }

    @Test
    fun `receives a file from the reference CLI and sends one to it`(): Unit = runBlocking {
        val venv = System.getenv("WORMHOLE_REF_VENV") ?: error("WORMHOLE_REF_VENV is not set")
        val cli = "$venv/bin/wormhole"
        val src = File(dir("ref-send"), "from-ref.bin").apply { writeBytes(Random(7).nextBytes(1_000_003)) }
        val out = dir("ref-recv")
        val code = "8-purple-sausages"
        val sender = ProcessBuilder(
            cli, "--relay-url", url, "--transit-helper", relay, "send", "--hide-progress", "--no-qr",
            "--code", code, src.path,
        ).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start()
        try {
            withTimeout(limit) {
                Wormhole(transferAppid(), url, WormholeOptions()).use { w ->
                    w.setCode(code)
                    val offer = offerOf(w.receiveOffer(TransferSettings(transitRelay = relay)))
                    assertEquals("from-ref.bin", offer.name())
                    val path = offer.accept(File(out, offer.name()).path, false, null)
                    assertArrayEquals(sha(src), sha(File(path)))
                    w.shutdown()
                }
            }
            assertTrue(sender.waitFor(60, TimeUnit.SECONDS))
            assertEquals(0, sender.exitValue())
        } finally {
            sender.destroyForcibly()
        }

        // And the other way.
        val mine = File(dir("kt-send"), "from-kotlin.bin").apply { writeBytes(Random(8).nextBytes(500_001)) }
        val refOut = dir("ref-out")
        withTimeout(limit) {
            Wormhole(transferAppid(), url, WormholeOptions()).use { w ->
                w.allocateCode(2u)
                val c = w.getCode()
                val receiver = ProcessBuilder(
                    cli, "--relay-url", url, "--transit-helper", relay, "receive", "--hide-progress",
                    "--accept-file", "-o", refOut.path, c,
                ).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start()
                try {
                    w.sendFile(mine.path, TransferSettings(transitRelay = relay), null)
                    w.shutdown()
                    assertTrue(receiver.waitFor(60, TimeUnit.SECONDS))
                    assertEquals(0, receiver.exitValue())
                } finally {
                    receiver.destroyForcibly()
                }
            }
        }
        val landed = File(refOut, "from-kotlin.bin").takeIf { it.exists() } ?: refOut
        assertArrayEquals(sha(mine), sha(landed))
    }

    /** Records a delegated wormhole's events; accepts an offer into `dest` when set. */
    class Events(private val dest: File? = null) : WormholeDelegate, TransferDelegate {
        val log = java.util.concurrent.LinkedBlockingQueue<String>()
        val updates = CopyOnWriteArrayList<TransferUpdate>()
        @Volatile var w: Wormhole? = null
        override fun onWelcome(welcomeJson: String) {}
        override fun onCode(code: String) {}
        override fun onUnverifiedKey(key: ByteArray) {}
        override fun onVerifier(verifier: ByteArray) {}
        override fun onVersions(versionsJson: String) {}
        override fun onMessage(message: ByteArray) { log.add("message") }
        override fun onClosed(outcome: Outcome) { log.add("closed ${outcome.happy} ${outcome.errorMessage}") }
        override fun onTransfer(update: TransferUpdate) {
            updates.add(update)
            when (update) {
                is TransferUpdate.Offer -> {
                    log.add("offer ${update.name} ${update.isDirectory}")
                    dest?.let { w!!.acceptOffer(it.path, false) }
                }
                is TransferUpdate.Progress -> {}
                is TransferUpdate.FileSent -> { log.add("file_sent ${update.outcome.happy} ${update.outcome.errorMessage}"); w!!.cancel() }
                is TransferUpdate.FileReceived -> { log.add("file_received ${update.path}"); w!!.cancel() }
                else -> log.add("other $update")
            }
        }
        fun next(): String = log.poll(60, TimeUnit.SECONDS) ?: error("no event within 60 s")
    }

    private fun tree(root: File): Map<String, String> =
        root.walkTopDown().filter { it.isFile }.associate {
            it.relativeTo(root).path to sha(it).joinToString("") { b -> "%02x".format(b) }
        }

    @Test
    fun `delegated wormholes send and receive a file and a directory with the reference CLI`() {
        val venv = System.getenv("WORMHOLE_REF_VENV") ?: error("WORMHOLE_REF_VENV is not set")
        val cli = "$venv/bin/wormhole"
        val base = dir("delegated")
        val file = File(base, "d.bin").apply { writeBytes(Random(9).nextBytes(700_001)) }
        val tree = File(base, "d-tree").apply {
            File(this, "sub/deeper").mkdirs()
            File(this, "a.txt").writeText("alpha")
            File(this, "sub/deeper/b.bin").writeBytes(Random(10).nextBytes(70_000))
        }
        for ((i, what) in listOf(file, tree).withIndex()) {
            // The reference sends; a delegated Kotlin wormhole receives.
            val inbox = dir("delegated-in-$i")
            val code = "${30 + i}-purple-sausages"
            val sender = ProcessBuilder(
                cli, "--relay-url", url, "--transit-helper", relay, "send", "--hide-progress", "--no-qr",
                "--code", code, what.path,
            ).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start()
            try {
                val ev = Events(dest = inbox)
                val w = Wormhole.withDelegate(transferAppid(), url, WormholeOptions(), ev, ev)
                ev.w = w
                w.startReceiveFile(TransferSettings(transitRelay = relay))
                assertThrows<WormholeException.InProgress> { w.startReceiveFile(TransferSettings()) }
                w.setCode(code)
                assertEquals("offer ${what.name} ${what.isDirectory}", ev.next())
                assertEquals("file_received ${File(inbox, what.name).path}", ev.next())
                assertTrue(ev.updates.any { it is TransferUpdate.Progress }, "progress updates")
                assertTrue(ev.next().startsWith("closed"), "closed comes last")
                assertTrue(sender.waitFor(60, TimeUnit.SECONDS))
                assertEquals(0, sender.exitValue())
                val got = File(inbox, what.name)
                if (what.isDirectory) assertEquals(tree(what), tree(got)) else assertArrayEquals(sha(what), sha(got))
                w.close()
            } finally {
                sender.destroyForcibly()
            }

            // A delegated Kotlin wormhole sends; the reference receives.
            val out = dir("delegated-out-$i")
            val ev = Events()
            val w = Wormhole.withDelegate(transferAppid(), url, WormholeOptions(), ev, ev)
            ev.w = w
            val code2 = "${40 + i}-purple-sausages"
            w.setCode(code2)
            w.startSendFile(what.path, TransferSettings(transitRelay = relay))
            assertThrows<WormholeException.InProgress> { w.startSendText("x") }
            assertThrows<WormholeException.InvalidState> { w.acceptOffer(out.path, false) }
            val receiver = ProcessBuilder(
                cli, "--relay-url", url, "--transit-helper", relay, "receive", "--hide-progress",
                "--accept-file", code2,
            ).directory(out).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start()
            try {
                assertEquals("file_sent true null", ev.next())
                assertTrue(receiver.waitFor(60, TimeUnit.SECONDS))
                assertEquals(0, receiver.exitValue())
                val got = File(out, what.name)
                if (what.isDirectory) assertEquals(tree(what), tree(got)) else assertArrayEquals(sha(what), sha(got))
            } finally {
                receiver.destroyForcibly()
                w.close()
            }
        }
    }
}
