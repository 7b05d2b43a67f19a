//! What the workspace's tests share (a dev-dependency only).

use proptest::test_runner::{Config, FileFailurePersistence};

/// A property test's configuration: `cases` cases, or `PROPTEST_CASES` when
/// it is set (scripts/test's bounded fuzzing step raises it,
/// docs/SECURITY.md). Failing inputs are kept in `regressions` (relative to
/// the crate, where tests run) and replayed first on every run.
pub fn proptest_config(cases: u32, regressions: &'static str) -> Config {
    // `default()` reads the PROPTEST_* variables.
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config.failure_persistence = Some(Box::new(FileFailurePersistence::Direct(regressions)));
    config
}
