#!/usr/bin/env bash
# Kotlin (and Swift) bindings suite, called by scripts/test.sh:
#   kotlin.sh prepare   (network available) install a JDK and Maven if missing, build
#                       libwormhole, check the generated bindings for drift, and fetch every
#                       Maven artifact (compile + a surefire run that selects no test);
#   kotlin.sh run       (loopback-only namespace) the JUnit suite, offline, against our
#                       wormhole-server; then the Swift suite where `swift` exists.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$(pwd)"
KT="$ROOT/bindings/kotlin"
LIBDIR="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
case "$LIBDIR" in /*) ;; *) LIBDIR="$ROOT/$LIBDIR" ;; esac
# In-process compiler: no Kotlin daemon outlives the suite.
MVN=(mvn -B -q -f "$KT/pom.xml" "-Dwormhole.lib.dir=$LIBDIR" -Dkotlin.compiler.daemon=false)

case "${1:-}" in
prepare)
    missing=()
    command -v javac >/dev/null || missing+=(default-jdk-headless)
    command -v mvn >/dev/null || missing+=(maven)
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
    scripts/gen-bindings.sh --check
    "${MVN[@]}" package -DskipTests   # compiles main and test sources, builds the jar
    "${MVN[@]}" test -Dtest=NoSuchTest -Dsurefire.failIfNoSpecifiedTests=false
    ;;
run)
    rm -rf "$KT/target/surefire-reports"
    rc=0
    "${MVN[@]}" -o test || rc=$?
    # One plain summary line from the JUnit reports.
    python3 - "$KT/target/surefire-reports" <<'PY' || rc=1
import glob, sys, xml.etree.ElementTree as ET
t = f = s = 0
for x in glob.glob(sys.argv[1] + "/TEST-*.xml"):
    r = ET.parse(x).getroot()
    t += int(r.get("tests", 0)); s += int(r.get("skipped", 0))
    f += int(r.get("failures", 0)) + int(r.get("errors", 0))
print(f"kotlin: {t - f - s} passed, {f} failed, {s} skipped")
sys.exit(1 if f or t == 0 else 0)
PY
    [ "$rc" = 0 ] || exit "$rc"
    if command -v swift >/dev/null; then
        (cd "$ROOT/bindings/swift" &&
            LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
                swift test -Xlinker -L"$LIBDIR")
    else
        echo "kotlin.sh: SKIPPED the Swift tests: no Swift toolchain (swift) on this machine"
    fi
    ;;
*)
    echo "usage: scripts/suites/kotlin.sh prepare|run" >&2
    exit 2
    ;;
esac
