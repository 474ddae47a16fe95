//! Mount points below a directory, read from `/proc/self/mountinfo`, and unmounting them.

use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use nix::mount::MntFlags;

/// Undoes the kernel's octal escapes in a mountinfo path field (`\040` space, `\011` tab,
/// `\012` newline, `\134` backslash, and any other `\ooo`). Bytes, not text: a path need not
/// be UTF-8.
pub fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(octal) = bytes.get(i + 1..i + 4)
            && octal.iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let value = octal
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// The mount points in mountinfo `text` at or below `dir`, deepest first.
pub fn mounts_under(text: &str, dir: &Path) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    points
}

/// The mount points at or below `dir` now, deepest first.
pub fn current_mounts_under(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|text| mounts_under(&text, dir))
        .unwrap_or_default()
}

/// Unmounts every mount at or below `dir` (tmpfs emptyDirs, leftover bind mounts), deepest
/// first; returns those still mounted afterwards.
pub fn unmount_under(dir: &Path) -> Vec<PathBuf> {
    for point in current_mounts_under(dir) {
        // Not detached: a busy mount stays, and then nothing below it is touched.
        let _ = nix::mount::umount2(&point, MntFlags::empty());
    }
    current_mounts_under(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_octal_escape_is_undone_issue_11() {
        assert_eq!(unescape(r"/var/lib/a\040b"), PathBuf::from("/var/lib/a b"));
        assert_eq!(unescape(r"/x\011y\012z"), PathBuf::from("/x\ty\nz"));
        assert_eq!(unescape(r"/back\134slash"), PathBuf::from(r"/back\slash"));
        assert_eq!(unescape(r"/not\08escape"), PathBuf::from(r"/not\08escape"));
        assert_eq!(unescape(r"/end\04"), PathBuf::from(r"/end\04"));
    }

    #[test]
    fn mounts_below_a_directory_are_listed_deepest_first() {
        let info = "\
22 1 8:1 / / rw - ext4 /dev/sda1 rw
31 22 0:40 / /var/lib/podvisor/pods/u1/volumes/kubernetes.io~empty-dir/m rw - tmpfs tmpfs rw
32 22 8:1 /data /var/lib/podvisor/pods/u1/volumes/with\\040space rw - ext4 /dev/sda1 rw
33 31 0:41 / /var/lib/podvisor/pods/u1/volumes/kubernetes.io~empty-dir/m/inner rw - tmpfs t rw
34 22 0:42 / /var/lib/podvisor/pods/u10 rw - tmpfs t rw
";
        let got = mounts_under(info, Path::new("/var/lib/podvisor/pods/u1"));
        assert_eq!(
            got,
            [
                PathBuf::from("/var/lib/podvisor/pods/u1/volumes/kubernetes.io~empty-dir/m/inner"),
                PathBuf::from("/var/lib/podvisor/pods/u1/volumes/kubernetes.io~empty-dir/m"),
                PathBuf::from("/var/lib/podvisor/pods/u1/volumes/with space"),
            ]
        );
    }
}
