//! Link libusertrap.so with library.ld added to the default linker script
//! (the large tables apart from the small statics).
fn main() {
    let script = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("library.ld");
    println!("cargo:rustc-link-arg-cdylib=-Wl,-T,{}", script.display());
    println!("cargo:rerun-if-changed=library.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
