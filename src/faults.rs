//! Fault points: places in a multi-step change (the in-place switch) where a test makes
//! the process die, to prove that a crash there leaves a whole state behind. A point fires
//! when `TIDEMARK_FAULT_POINT` names it: the process aborts at once (as a SIGKILL would
//! stop it: no destructor, no cleanup). Unset, a point costs one environment lookup.

/// The variable that names the point to die at.
pub const VARIABLE: &str = "TIDEMARK_FAULT_POINT";

/// Dies here when the fault point `name` is asked for.
pub fn point(name: &str) {
    if std::env::var(VARIABLE).is_ok_and(|asked| asked == name) {
        eprintln!("tidemark: fault point {name}: aborting");
        std::process::abort();
    }
}
