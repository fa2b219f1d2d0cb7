//! Small JSON files in the state directory that must survive a crash: written beside and
//! renamed, so a reader finds the old content or the new one, never half of either.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The value kept in `path`, or the default if the file does not exist. A file that does not
/// parse is an error naming it, with `fix` telling the operator what to do.
pub fn load<T: DeserializeOwned + Default>(path: &Path, fix: &str) -> std::io::Result<T> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}; {fix}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e),
    }
}

/// Writes `value` to `path` as pretty JSON, atomically.
pub fn save<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    write_atomic(path, &bytes, false)
}

/// Writes `bytes` beside `path`, fsyncs, renames over it and fsyncs the directory, so the
/// new content survives a power cut once this returns; `private` files are 0600. The temporary
/// name is the file's own plus the process and a counter: `agent.key` and `agent.pem` must not
/// share one, nor two writers of the same file.
pub fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a state file needs a file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = path.with_file_name(tmp_name);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if private { 0o600 } else { 0o644 })
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return written;
    }
    sync_dir(path)
}

/// Fsyncs the directory holding `path`, which makes a rename or a new file in it durable.
pub fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_saved_value_loads_back_and_a_missing_file_is_the_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.json");
        assert_eq!(
            super::load::<Vec<u32>>(&path, "delete it").expect("missing"),
            Vec::<u32>::new()
        );
        super::save(&path, &vec![1u32, 2]).expect("save");
        assert_eq!(super::load::<Vec<u32>>(&path, "delete it").expect("load"), vec![1, 2]);
        std::fs::write(&path, b"{").expect("write");
        let e = super::load::<Vec<u32>>(&path, "delete it").expect_err("garbage");
        assert!(e.to_string().contains("delete it"), "{e}");
    }

    #[test]
    fn files_of_one_stem_do_not_share_a_temporary_and_none_is_left_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("agent.key");
        let pem = dir.path().join("agent.pem");
        std::thread::scope(|s| {
            for i in 0..50u32 {
                let (key, pem) = (&key, &pem);
                s.spawn(move || {
                    super::write_atomic(key, format!("key {i}").as_bytes(), true).expect("key");
                    super::write_atomic(pem, format!("pem {i}").as_bytes(), false).expect("pem");
                });
            }
        });
        assert!(std::fs::read_to_string(&key).expect("key").starts_with("key "));
        assert!(std::fs::read_to_string(&pem).expect("pem").starts_with("pem "));
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
