//! The committed artifacts (what the Rust bindings and the EVM run) are exactly what the pinned
//! compiler makes of the committed sources.

use std::path::Path;
use std::process::Command;

#[test]
fn artifacts_match_a_fresh_compile() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let install = Command::new("bash")
        .args(["scripts/install-tools.sh", "solc"])
        .current_dir(&root)
        .status()
        .expect("bash runs scripts/install-tools.sh");
    assert!(
        install.success(),
        "scripts/install-tools.sh solc failed: it needs npm and the npm registry"
    );
    let check = Command::new("node")
        .args(["chain/compile.cjs", "--check"])
        .current_dir(&root)
        .output()
        .expect("Node.js is needed to compile the contracts (see README)");
    assert!(
        check.status.success(),
        "artifacts are stale or the sources don't compile:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
}
