//! Replays every committed fuzz input through its target's check, on stable, in every
//! `cargo test`: the seed corpus (`fuzz/corpus/TARGET/`, from PROTOCOL.md's transcripts and
//! the interop tests) and every input a campaign found a bug with
//! (`fuzz/regressions/TARGET/`). A target without seeds fails the test.

use std::path::Path;

fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).expect("readable input");
            (p.display().to_string(), bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_target_replays_its_corpus_and_regressions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, check) in wormhole_fuzz::TARGETS {
        let seeds = inputs(&root.join("corpus").join(name));
        assert!(!seeds.is_empty(), "fuzz/corpus/{name}/ has no seed inputs");
        let regressions = inputs(&root.join("regressions").join(name));
        for (path, bytes) in seeds.iter().chain(&regressions) {
            let outcome = std::panic::catch_unwind(|| check(bytes));
            assert!(outcome.is_ok(), "{name}: {path} fails its check");
        }
        println!(
            "{name}: {} seeds, {} regression inputs",
            seeds.len(),
            regressions.len()
        );
    }
}

/// Every target has a binary in `fuzz_targets/` and an entry in `Cargo.toml`.
#[test]
fn every_target_has_a_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    for (name, _) in wormhole_fuzz::TARGETS {
        assert!(
            root.join("fuzz_targets")
                .join(format!("{name}.rs"))
                .is_file(),
            "fuzz_targets/{name}.rs is missing"
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "Cargo.toml has no [[bin]] {name}"
        );
    }
}
