//! The token file: its format (versioned JSON, no secrets), reading it
//! (a missing file is an empty one) and replacing it atomically with mode
//! 0600.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Current version of the token file format.
const FILE_VERSION: u32 = 1;

/// Why a token file or a token entry is unusable. Messages name the file and
/// the token id; they never contain a secret (the file holds none).
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file cannot be read or written.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The token file.
        path: PathBuf,
        /// The operating system's reason.
        cause: std::io::Error,
    },
    /// The file is not a token file.
    #[error("{}: {cause}", path.display())]
    Syntax {
        /// The token file.
        path: PathBuf,
        /// serde_json's message, with line and column.
        cause: serde_json::Error,
    },
    /// The file is from a newer regauth.
    #[error("{}: version {found} is not supported (this regauth reads version {FILE_VERSION})", path.display())]
    Version {
        /// The token file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// One entry is invalid.
    #[error("{}: token {id}: {reason}", path.display())]
    Entry {
        /// The token file.
        path: PathBuf,
        /// The entry's id.
        id: String,
        /// What is wrong.
        reason: String,
    },
}

/// The token file as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    /// Format version (1).
    pub version: u32,
    /// The tokens, oldest first.
    pub tokens: Vec<TokenRecord>,
}

impl Default for TokenFile {
    fn default() -> Self {
        TokenFile {
            version: FILE_VERSION,
            tokens: Vec::new(),
        }
    }
}

/// One token as stored. Holds no secret, only its hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    /// Public handle: what `list`, `revoke`, logs and metrics name.
    pub id: String,
    /// The account the token logs in as.
    pub account: String,
    /// Scope patterns in the ACL's glob syntax, e.g. `repository:ci/**:pull,push`.
    pub scopes: Vec<String>,
    /// When the token stops working; `None`: never.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires: Option<OffsetDateTime>,
    /// The operator's note.
    #[serde(default)]
    pub description: String,
    /// When the token was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// SHA-256 of the secret, lower-case hex.
    pub secret_sha256: String,
}

/// Reads a token file; a missing file reads as an empty one.
pub fn read_token_file(path: &Path) -> Result<TokenFile, TokenFileError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(TokenFile::default())
        }
        Err(cause) => {
            return Err(TokenFileError::Io {
                path: path.to_owned(),
                cause,
            })
        }
    };
    let file: TokenFile = serde_json::from_str(&text).map_err(|cause| TokenFileError::Syntax {
        path: path.to_owned(),
        cause,
    })?;
    if file.version != FILE_VERSION {
        return Err(TokenFileError::Version {
            path: path.to_owned(),
            found: file.version,
        });
    }
    Ok(file)
}

/// Replaces the token file with `file`: written to a temporary file (mode
/// 0600 from the start) in the same directory, synced, renamed over the old
/// one, and the directory synced, so that a reader (the server's reload)
/// sees either the old file or the new one, never half of one.
pub fn write_token_file(path: &Path, file: &TokenFile) -> Result<(), TokenFileError> {
    let io_error = |cause| TokenFileError::Io {
        path: path.to_owned(),
        cause,
    };
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io_error(std::io::Error::other(
            "the token file path has no file name",
        ))
    })?;
    let temporary = directory.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut text = serde_json::to_string_pretty(file).map_err(|e| io_error(e.into()))?;
    text.push('\n');
    let written = (|| {
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        out.write_all(text.as_bytes())?;
        out.sync_all()?;
        fs::rename(&temporary, path)?;
        fs::File::open(&directory)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written.map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trip_is_atomic_private_and_missing_means_empty() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        assert_eq!(read_token_file(&path).unwrap(), TokenFile::default());
        let file = TokenFile {
            version: FILE_VERSION,
            tokens: vec![TokenRecord {
                id: "tok_1".into(),
                account: "ci".into(),
                scopes: vec!["repository:ci/**:pull".into()],
                expires: Some(OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()),
                description: "test".into(),
                created: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
                secret_sha256: "ab".repeat(32),
            }],
        };
        write_token_file(&path, &file).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_token_file(&path).unwrap(), file);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("2027-01-15T08:00:00Z"), "{text}");
        // Only the file itself is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        fs::write(&path, r#"{"version": 9, "tokens": []}"#).unwrap();
        assert!(read_token_file(&path)
            .unwrap_err()
            .to_string()
            .contains("version 9"));
        fs::write(&path, r#"{"version": 1, "tokens": [], "extra": 1}"#).unwrap();
        assert!(read_token_file(&path)
            .unwrap_err()
            .to_string()
            .contains("extra"));
    }
}
