//! The embedded SQLite database's files: the folder is created 0700 and the database file
//! 0600 before SQLite opens it (SQLite gives its `-wal` and `-shm` files the database
//! file's mode), so another local user cannot copy the signing keys, sessions or audit
//! trail. Folders and files made looser by hand are reported at start.

use std::path::{Path, PathBuf};

/// The database file a `sqlite:` URL names; `None` for other schemes and in-memory
/// databases.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path.contains(":memory:") || path.starts_with("file::memory") {
        return None;
    }
    Some(PathBuf::from(path))
}

/// Creates what is missing of the database's folder (0700) and file (0600), and returns
/// a sentence for each existing folder or file that others can read or write.
pub fn prepare(db: &Path) -> std::io::Result<Vec<String>> {
    let dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut loose = Vec::new();
    if dir.exists() {
        // Others may list the folder (the files themselves are 0600), but not write it:
        // whoever can write it can swap the database for one of their own.
        loose.extend(too_open(dir, "folder", 0o022));
    } else {
        create_private_dir(dir)?;
    }
    if db.exists() {
        loose.extend(too_open(db, "database file", 0o077));
    } else {
        create_private_file(db)?;
    }
    for suffix in ["-wal", "-shm", ".key"] {
        let mut side = db.as_os_str().to_owned();
        side.push(suffix);
        let side = PathBuf::from(side);
        if side.exists() {
            loose.extend(too_open(&side, "file", 0o077));
        }
    }
    Ok(loose)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn create_private_file(file: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
    {
        Ok(_) => Ok(()),
        // Another process (a second instance, the CLI) created it first: fine.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn create_private_file(_file: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn too_open(path: &Path, what: &str, forbidden: u32) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & forbidden != 0).then(|| {
        format!(
            "the {what} {} has mode {mode:03o}: other local users can reach the database; run `chmod go-rwx` on it",
            path.display()
        )
    })
}

#[cfg(not(unix))]
fn too_open(_path: &Path, _what: &str, _forbidden: u32) -> Option<String> {
    None
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_database_is_private_and_a_loose_one_is_reported() {
        let root = std::env::temp_dir().join(format!("gh-datadir-{}", uuid::Uuid::new_v4()));
        let db = root.join("data").join("gatehouse.db");
        assert!(prepare(&db).unwrap().is_empty());
        assert_eq!(mode(db.parent().unwrap()), 0o700);
        assert_eq!(mode(&db), 0o600);
        // Opening again changes nothing and reports nothing.
        assert!(prepare(&db).unwrap().is_empty());
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        // A folder others may list is fine; one others may write is not.
        std::fs::set_permissions(db.parent().unwrap(), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        assert_eq!(prepare(&db).unwrap().len(), 1);
        std::fs::set_permissions(db.parent().unwrap(), std::fs::Permissions::from_mode(0o775))
            .unwrap();
        let loose = prepare(&db).unwrap();
        assert_eq!(loose.len(), 2, "{loose:?}");
        assert!(loose.iter().any(|l| l.contains("644")));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn only_file_urls_name_a_file() {
        assert_eq!(
            sqlite_path("sqlite:data/gatehouse.db?mode=rwc"),
            Some(PathBuf::from("data/gatehouse.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:///var/lib/g.db"),
            Some(PathBuf::from("/var/lib/g.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://h/db"), None);
    }
}
