//! The small CLI commands: `hash-password`, `keygen`, `check-config`.

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use anyhow::{bail, Context};
use zeroize::Zeroizing;

use crate::keys::{self, Algorithm};
use crate::snapshot::{write_new_file, MissingKeys, Snapshot};

/// Reads a password (no-echo prompt on a terminal, else one line of
/// stdin) and prints its bcrypt hash. Never takes the password on argv,
/// where `ps` and shell history would show it.
pub fn hash_password(cost: u32) -> anyhow::Result<()> {
    if !(4..=31).contains(&cost) {
        bail!("--cost must be between 4 and 31");
    }
    let password = if std::io::stdin().is_terminal() {
        let first = Zeroizing::new(rpassword::prompt_password("Password: ")?);
        let second = Zeroizing::new(rpassword::prompt_password("Again: ")?);
        if *first != *second {
            bail!("the passwords differ");
        }
        first
    } else {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned())
    };
    if password.is_empty() {
        bail!("refusing to hash an empty password");
    }
    println!("{}", bcrypt::hash(password.as_bytes(), cost)?);
    Ok(())
}

/// Writes a new private key (mode 0600) and a self-signed certificate for
/// the registry's `rootcertbundle`. Refuses to overwrite either file.
pub fn keygen(
    algorithm: Algorithm,
    key: &Path,
    cert: &Path,
    common_name: &str,
) -> anyhow::Result<()> {
    for path in [key, cert] {
        if path.exists() {
            bail!("{} exists; refusing to overwrite it", path.display());
        }
    }
    let (key_pem, cert_pem) = keys::generate(algorithm, common_name)?;
    write_new_file(key, &key_pem, 0o600)?;
    write_new_file(cert, &cert_pem, 0o644)?;
    println!("private key: {} (keep it secret, mode 0600)", key.display());
    println!(
        "certificate: {} (the registry's auth.token.rootcertbundle)",
        cert.display()
    );
    Ok(())
}

/// Loads the config and every file it names; prints a summary. The error
/// says what is wrong and where.
pub fn check_config(path: &Path) -> anyhow::Result<()> {
    // Absolute, so that every path in the summary and in errors is too.
    let path = std::path::absolute(path)?;
    let snapshot = Snapshot::load_with(&path, MissingKeys::Preview)?;
    print!("{}", snapshot.summary());
    let key = &snapshot.config.token.private_key;
    if !key.exists() {
        println!(
            "note:      {} does not exist yet; `serve` will generate it (token.generate_if_missing)",
            key.display()
        );
    }
    println!("configuration OK");
    Ok(())
}
