//! The file side of log rotation and retention: listing, compressing, renaming, deleting,
//! and reading a container's log across its rotated files. Blocking; callers run it on
//! tokio's blocking pool.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use super::retention::LogFile;
use super::rotation::{self, COMPRESSED, TEMPORARY};
use crate::clock::Timestamp;

/// The names of the files in `dir` (empty when it does not exist).
pub fn names(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Some(name) = entry?.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// The regular files in `dir` with their modification times.
pub fn files(dir: &Path) -> io::Result<Vec<LogFile>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        if let (Some(name), Ok(modified)) = (entry.file_name().to_str(), meta.modified()) {
            out.push(LogFile {
                name: name.to_owned(),
                modified: Timestamp::from_system(modified),
            });
        }
    }
    Ok(out)
}

/// The rotated siblings of `log`, listed from its directory.
pub fn siblings(log: &Path) -> io::Result<Vec<PathBuf>> {
    let dir = log.parent().unwrap_or(Path::new("."));
    Ok(rotation::siblings_of(log, &names(dir)?))
}

/// The rotated files still holding `log`'s lines, oldest first (`log` itself not among them).
pub fn rotated(log: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(rotation::rotated(&siblings(log)?))
}

/// Removes a file; one already gone is fine.
pub fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Gzips `log` to `<log>.gz` through `<log>.tmp` (same mode), then removes `log`.
pub fn compress(log: &Path) -> io::Result<()> {
    let source = File::open(log)?;
    let mode = source.metadata()?.permissions().mode();
    let tmp = with_suffix(log, TEMPORARY);
    let result = (|| {
        let out = File::create(&tmp)?;
        out.set_permissions(fs::Permissions::from_mode(mode))?;
        let mut gz = GzEncoder::new(out, Compression::default());
        io::copy(&mut BufReader::new(source), &mut gz)?;
        gz.finish()?.sync_all()?;
        fs::rename(&tmp, with_suffix(log, COMPRESSED))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    remove(log)
}

/// One reader over `files` in order, gunzipping the compressed ones. A file that is gone by
/// the time it is reached (rotated away meanwhile) is skipped.
pub fn chain(files: &[PathBuf]) -> io::Result<Box<dyn Read + Send>> {
    let mut reader: Box<dyn Read + Send> = Box::new(io::empty());
    for f in files {
        let file = match File::open(f) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let next: Box<dyn Read + Send> = if f.to_string_lossy().ends_with(COMPRESSED) {
            Box::new(GzDecoder::new(BufReader::new(file)))
        } else {
            Box::new(file)
        };
        reader = Box::new(reader.chain(next));
    }
    Ok(reader)
}

/// Writes `data` to `path` (for tests and tools that build logs).
pub fn write_gz(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut gz = GzEncoder::new(File::create(path)?, Compression::default());
    gz.write_all(data)?;
    gz.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compressed_log_reads_back_the_same_and_the_original_is_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("0.log.20261201-101010");
        let content: Vec<u8> = (0..20_000u32)
            .flat_map(|i| {
                format!("2026-12-01T10:10:10.000000000Z stdout F line {i}\n").into_bytes()
            })
            .collect();
        fs::write(&log, &content).expect("write");
        fs::set_permissions(&log, fs::Permissions::from_mode(0o640)).expect("chmod");
        compress(&log).expect("compress");
        assert!(!log.exists());
        assert!(!with_suffix(&log, TEMPORARY).exists());
        let gz = with_suffix(&log, COMPRESSED);
        assert_eq!(
            fs::metadata(&gz).expect("gz").permissions().mode() & 0o777,
            0o640
        );
        let mut back = Vec::new();
        chain(&[gz])
            .expect("chain")
            .read_to_end(&mut back)
            .expect("read");
        assert_eq!(back, content);
    }

    #[test]
    fn all_rotated_files_and_the_live_log_read_as_one_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let live = dir.path().join("0.log");
        write_gz(&dir.path().join("0.log.20261201-100000.gz"), b"one\n").expect("gz");
        fs::write(dir.path().join("0.log.20261201-110000"), b"two\n").expect("w");
        fs::write(dir.path().join("0.log.20261201-120000.tmp"), b"junk\n").expect("w");
        fs::write(dir.path().join("1.log"), b"other attempt\n").expect("w");
        fs::write(&live, b"three\n").expect("w");
        let mut files = rotated(&live).expect("list");
        files.push(live);
        let mut text = String::new();
        chain(&files)
            .expect("chain")
            .read_to_string(&mut text)
            .expect("read");
        assert_eq!(text, "one\ntwo\nthree\n");
    }
}
