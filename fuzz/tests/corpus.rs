//! Replays the committed corpus and every saved fuzzing crash through the fuzz targets' own
//! checks ([`mqtt5_codec_fuzz::oracles`]), on the stable toolchain: every crash found once
//! stays a regression test (see `fuzz/README.md`). `scripts/test-all.sh` runs it as
//! `cargo test --manifest-path fuzz/Cargo.toml`.

use std::fs;
use std::path::{Path, PathBuf};

use mqtt5_codec_fuzz::oracles;

/// A fuzz target's check: it panics when a property fails.
type Check = fn(&[u8]);

/// The fuzz targets, by name, and the check each runs.
const TARGETS: [(&str, Check); 3] = [
    ("decode", oracles::decode),
    ("decode_split", oracles::decode_split),
    ("roundtrip", oracles::roundtrip),
];

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files of `dir`, sorted by name, except `README.md`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file() && path.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    files.sort();
    files
}

/// Runs `check` on `file`, naming the file if it panics.
fn replay(check: Check, file: &Path) {
    let data = fs::read(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    let outcome = std::panic::catch_unwind(|| check(&data));
    assert!(
        outcome.is_ok(),
        "{} fails its fuzz check; input: {}",
        file.display(),
        data.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
}

fn replay_corpus(target: &str) {
    let (_, check) = TARGETS.iter().find(|(name, _)| *name == target).unwrap();
    let dir = fuzz_dir().join("corpus").join(target);
    let files = files(&dir);
    assert!(!files.is_empty(), "{} holds no seed", dir.display());
    for file in &files {
        replay(*check, file);
    }
}

#[test]
fn decode_corpus_passes_its_fuzz_check() {
    replay_corpus("decode");
}

#[test]
fn decode_split_corpus_passes_its_fuzz_check() {
    replay_corpus("decode_split");
}

#[test]
fn roundtrip_corpus_passes_its_fuzz_check() {
    replay_corpus("roundtrip");
}

/// Each file in `fuzz/regressions/` is named `<target>-<short-name>` and replayed through the
/// check of `<target>`.
#[test]
fn fuzz_regressions_pass_their_fuzz_check() {
    for file in files(&fuzz_dir().join("regressions")) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let target = name
            .split_once('-')
            .map_or(name.as_str(), |(target, _)| target);
        let Some((_, check)) = TARGETS.iter().find(|(t, _)| *t == target) else {
            panic!(
                "{name}: the name must start with a fuzz target and '-': decode, decode_split or roundtrip"
            );
        };
        replay(*check, &file);
    }
}
