//! Export files in a local folder, served at `/exports/…`.
//!
//! A file is written under a temporary name in the same folder, flushed to
//! disk and renamed into place, so a reader sees the whole old file or the
//! whole new one, never a part.

use std::{
    io,
    path::{Path, PathBuf},
};

use super::is_valid_name;

/// A folder of published export files.
#[derive(Debug, Clone)]
pub struct LocalFolder {
    dir: PathBuf,
}

impl LocalFolder {
    /// Opens the folder, creating it when missing.
    pub fn open(dir: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(LocalFolder { dir })
    }

    /// Returns the folder's path.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Returns the path of a published file, or `None` when `name` is not a valid file name.
    /// Temporary files start with a dot and are never served.
    pub fn path_of(&self, name: &str) -> Option<PathBuf> {
        is_valid_name(name).then(|| self.dir.join(name))
    }

    /// Returns a fresh temporary path in the store's folder for a file that will become `name`.
    pub fn temporary_path(&self, name: &str) -> PathBuf {
        self.dir
            .join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()))
    }

    /// Flushes a finished temporary file to disk and renames it to `name`.
    pub fn publish(&self, temporary: &Path, name: &str) -> io::Result<()> {
        let target = self.path_of(name).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid export file name {name:?}"),
            )
        })?;
        std::fs::File::open(temporary)?.sync_all()?;
        std::fs::rename(temporary, &target)?;
        // Persist the rename itself; a folder cannot be opened for syncing on every platform.
        if let Ok(folder) = std::fs::File::open(&self.dir) {
            let _ = folder.sync_all();
        }
        Ok(())
    }

    /// Writes `bytes` as the file `name`, whole or not at all.
    pub fn write_whole(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let temporary = self.temporary_path(name);
        std::fs::write(&temporary, bytes)?;
        self.publish(&temporary, name).inspect_err(|_| {
            let _ = std::fs::remove_file(&temporary);
        })
    }

    /// Reads a published file, or returns `None` when it does not exist.
    pub async fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        let Some(path) = self.path_of(name) else {
            return Ok(None);
        };
        match tokio::fs::read(path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Checks that the folder exists and accepts a new file, by writing and removing one.
    /// Permission bits alone would miss a read-only mount or a full disk.
    pub async fn check_writable(&self) -> io::Result<()> {
        let probe = self.temporary_path("ready");
        tokio::fs::write(&probe, b"").await?;
        tokio::fs::remove_file(&probe).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_of_rejects_traversal_and_temporary_names() {
        let folder = LocalFolder {
            dir: PathBuf::from("/srv/exports"),
        };
        assert!(folder.path_of("index.json").is_some());
        assert!(folder.path_of("diagnosis-keys.json.gz").is_some());
        for bad in [
            "",
            "../secrets",
            "a/b",
            ".index.json.123.tmp",
            "index.json\0",
            "%2e%2e",
        ] {
            assert!(folder.path_of(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn write_whole_replaces_file() {
        let dir = tempfile::tempdir().unwrap();
        let folder = LocalFolder::open(dir.path().to_owned()).unwrap();
        folder.write_whole("index.json", b"first").unwrap();
        folder.write_whole("index.json", b"second").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("index.json")).unwrap(),
            b"second"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file is left"
        );
    }

    #[tokio::test]
    async fn check_writable_fails_without_folder() {
        let dir = tempfile::tempdir().unwrap();
        let folder = LocalFolder::open(dir.path().join("exports")).unwrap();
        folder.check_writable().await.unwrap();
        assert_eq!(
            std::fs::read_dir(folder.path()).unwrap().count(),
            0,
            "the probe file is removed"
        );

        std::fs::remove_dir(folder.path()).unwrap();
        assert!(folder.check_writable().await.is_err());
    }
}
