//! Writes the runner's test models into runner/tests/data/models/ (run from the workspace root).

fn main() -> std::io::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(integration::MODELS_DIR);
    std::fs::create_dir_all(&dir)?;
    for (name, bytes) in integration::runner_test_models() {
        std::fs::write(dir.join(&name), bytes)?;
        println!("wrote {}", dir.join(name).display());
    }
    Ok(())
}
