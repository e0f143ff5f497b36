//! Link the launcher as a static executable without libc or start files:
//! the entry point is the library's `ut_launcher_start`, the gate section
//! sits at GATE_ADDR (launcher.ld) (0x7e9000000000, exempt from the trap in every
//! process), and the rest at 0x60000000: below 2 GiB (static code model) and clear
//! of the slot windows (0x1006xxxx-0x3f06xxxx) and of the fixed
//! addresses of non-PIE programs (0x400000) that the launcher loads.
fn main() {
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-Wl,-e,ut_launcher_start",
        "-Wl,--image-base=0x60000000",
        "-Wl,-z,noexecstack",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    let script = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("launcher.ld");
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
    println!("cargo:rerun-if-changed=launcher.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
