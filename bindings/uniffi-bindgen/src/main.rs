//! `uniffi-bindgen`: generates the Kotlin and Swift sources for libwormhole's uniffi layer.
//! Use it through `scripts/gen-bindings.sh`, which passes the right library and paths.

fn main() {
    uniffi::uniffi_bindgen_main()
}
