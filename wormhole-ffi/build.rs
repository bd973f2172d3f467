//! Give the shared library a soname on ELF platforms, so programs linked against it record
//! `libwormhole.so` (not a build path) as their dependency.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if matches!(
        os.as_str(),
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd"
    ) {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libwormhole.so");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
