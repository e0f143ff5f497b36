//! What a backend reports when it cannot be armed (its own file so that the
//! backends, which produce it, need not import the module that chooses them).

/// Why a backend could not be armed: the call that failed and its errno.
pub struct ArmError {
    pub what: &'static str,
    pub errno: i64,
    pub hint: &'static str,
}
