//! The runner's test models are files (the runner never depends on the trainer): they must be what the
//! trainer's exporter makes today.

#[test]
fn the_runner_test_models_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(integration::MODELS_DIR);
    for (name, bytes) in integration::runner_test_models() {
        let committed = std::fs::read(dir.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            committed == bytes,
            "{name} differs from what the trainer exports today: run `cargo run --release -p integration \
             --example write_runner_models` and commit the files"
        );
    }
}
