//! Replaying Go's own logs into a view.

use std::path::Path;

use almanac_log::segment::Sha224Digest;
use almanac_log::{Position, Snapshot};

use crate::kinds::KindCounts;
use crate::replay;

#[test]
fn replaying_go_logs_sees_every_mutation() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../log/tests/fixtures/go");
    for (name, expected) in [("tiny", 18), ("gerrit-sync", 18), ("mixed", 1625)] {
        let bytes = std::fs::read(fixtures.join(format!("{name}.mutlog"))).expect("fixture");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = format!("0000.{}.mutlog", Sha224Digest::of(&bytes));
        std::fs::write(dir.path().join(file), &bytes).expect("write");
        let snap = Snapshot::open(dir.path()).expect("snapshot");
        let mut view = KindCounts::default();
        let end =
            replay(&mut snap.read_from(Position(0)).expect("reader"), &mut view).expect("replay");
        assert_eq!(end, Position(bytes.len() as u64));
        assert_eq!(view.mutations, expected, "{name}");
        // Folding twice gives the same view.
        let mut again = KindCounts::default();
        replay(
            &mut snap.read_from(Position(0)).expect("reader"),
            &mut again,
        )
        .expect("replay");
        assert_eq!(again, view);
    }
}
