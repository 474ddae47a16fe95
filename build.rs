//! Link settings for podvisor's executables.
//!
//! Relative relocations are packed (`-z pack-relative-relocs`, DT_RELR): a position-
//! independent binary otherwise carries ~460 KiB of `.rela.dyn` that the loader reads at every
//! start and that stays resident for the daemon's life. Needs glibc 2.36+ where the binary
//! runs; the build checks the glibc it links against and leaves the flag out below that.

use std::process::Command;

fn glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(version) = text.trim().strip_prefix("glibc ") else {
        return false;
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    let native = std::env::var("HOST") == std::env::var("TARGET");
    if linux_gnu && native && glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
