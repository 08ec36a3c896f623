//! The small CLI commands: `hash-password`, `keygen`, `check-config`, `jwks`.

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use anyhow::{bail, Context};
use zeroize::Zeroizing;

use crate::keys::{self, Algorithm, Jwks, SigningKey, VerifyingKey};
use crate::snapshot::{read_config, write_new_file, MissingKeys, Snapshot};

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

/// Prints the JWK Set of the signing key and of `token.trusted_certificates` (public
/// parts only) for registry 3's `auth.token.jwks`. `private_key` replaces
/// `token.private_key`, for configs that name systemd's credential copy of the key,
/// which exists only inside the service.
pub fn jwks(config_path: &Path, private_key: Option<&Path>) -> anyhow::Result<()> {
    let config_path = std::path::absolute(config_path)?;
    let config = read_config(&config_path)?;
    let token = &config.token;
    let key_path = private_key.unwrap_or(&token.private_key);
    let read = |path: &Path| {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    };
    // The certificate only decides x5c, which a JWKS does not carry: not read.
    let signing = SigningKey::from_pem(&read(key_path)?, None, token.algorithm, token.kid)
        .with_context(|| key_path.display().to_string())?;
    let mut trusted = Vec::new();
    for path in &token.trusted_certificates {
        let keys =
            VerifyingKey::from_pem(&read(path)?).with_context(|| path.display().to_string())?;
        trusted.extend(keys);
    }
    let jwks = Jwks::new(&signing, &trusted, token.kid);
    println!("{}", serde_json::to_string_pretty(&jwks)?);
    if let Some(certificate) = &token.certificate {
        eprintln!(
            "regauth: warning: token.certificate ({}) is set, so tokens carry x5c, which \
             registry 3 checks against auth.token.rootcertbundle without ever looking at \
             this JWKS; remove token.certificate to use it",
            certificate.display()
        );
    }
    Ok(())
}
