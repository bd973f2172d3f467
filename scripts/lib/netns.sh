# Sourced by the scripts that run things in a loopback-only network namespace
# (scripts/test.sh, scripts/demo.sh, scripts/soak.sh, benches/run.sh).
#
# loopback_ns [UNSHARE FLAGS...]: set the array NS to the unshare command that makes the new
# namespaces (default: network, mount, and PID with its own /proc, so nothing started
# inside outlives it), in an unprivileged user namespace (-r) when the kernel allows it,
# else as plain root. Exits with a message when neither works. The caller brings `lo` up
# inside.
loopback_ns() {
    local flags=("$@")
    [ ${#flags[@]} -gt 0 ] || flags=(-nmpf --mount-proc)
    if unshare -r "${flags[@]}" true 2>/dev/null; then
        NS=(unshare -r "${flags[@]}")
    elif [ "$(id -u)" -eq 0 ] && unshare "${flags[@]}" true 2>/dev/null; then
        NS=(unshare "${flags[@]}")
    else
        printf '%s: ERROR: cannot create the namespaces (tried unshare -r %s and, as root, unshare %s)\n' \
            "$(basename "$0")" "${flags[*]}" "${flags[*]}" >&2
        exit 1
    fi
}
