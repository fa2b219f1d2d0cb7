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

/// Writes `bytes` beside `path`, fsyncs, renames over it; `private` files are 0600.
pub fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
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
}
