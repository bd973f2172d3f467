// A small command-line program: send or receive a text like `wormhole send --text` /
// `wormhole receive`, through the Kotlin bindings of libwormhole.
//
//   send    RELAY_URL TEXT   prints the code, waits for the receiver
//   receive RELAY_URL CODE   prints the text
//
// It speaks the reference CLI's text protocol, so the other side can be the `wormhole` CLI.
// Built (and run by a test) with bindings/kotlin: mvn -f bindings/kotlin/pom.xml test.
package wormhole.examples

import kotlinx.coroutines.runBlocking
import wormhole.Wormhole
import wormhole.WormholeException
import wormhole.WormholeOptions
import wormhole.transferAppid
import kotlin.system.exitProcess

fun run(args: List<String>, out: (String) -> Unit): Int = runBlocking {
    if (args.size != 3 || args[0] !in setOf("send", "receive")) {
        out("usage: send RELAY_URL TEXT | receive RELAY_URL CODE")
        return@runBlocking 2
    }
    val (mode, url, arg) = args
    try {
        Wormhole(transferAppid(), url, WormholeOptions()).use { w ->
            if (mode == "send") {
                w.allocateCode(2u)
                out("Wormhole code is: ${w.getCode()}")
                w.sendText(arg)
                out("text message sent")
            } else {
                w.setCode(arg)
                out(w.receiveText())
            }
            w.shutdown()
        }
        0
    } catch (e: WormholeException) {
        out("ERROR: ${e.message}")
        1
    }
}

fun main(args: Array<String>) {
    exitProcess(run(args.toList()) { println(it) })
}
