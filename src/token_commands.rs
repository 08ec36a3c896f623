//! `regauth token create|list|revoke`: edit the API token file the config
//! names (`api_tokens`). The running server picks every change up by its
//! usual reload.
//!
//! Each edit takes an exclusive lock on the token file's directory (so two
//! commands at once cannot lose each other's tokens), reads the file, and
//! replaces it atomically. `create` prints the secret once, on stdout, alone
//! on its line; everything else goes to stderr.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use time::OffsetDateTime;

use crate::identity::api_tokens::{
    compile_scopes, new_id, new_secret, read_token_file, write_token_file, TokenRecord,
};
use crate::snapshot::read_config;
use crate::users::{parse_htpasswd, Users};

/// Longest lifetime `--expires` accepts.
const MAX_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The `token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print its secret (once, on stdout).
    Create {
        /// The JSON configuration file; its `api_tokens` names the token file.
        #[arg(long, short, env = "REGAUTH_CONFIG")]
        config: PathBuf,
        /// The account the token logs in as (an inline or htpasswd user).
        #[arg(long)]
        account: String,
        /// What the token may be granted at most, in the ACL's glob syntax,
        /// e.g. `repository:ci/**:pull,push`. Repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Lifetime such as `30s`, `12h`, `90d`; without it the token never
        /// expires.
        #[arg(long, value_parser = parse_lifetime)]
        expires: Option<Duration>,
        /// A note for whoever reads `token list`.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List tokens: id, account, scopes, expiry, description (never secrets).
    List {
        /// The JSON configuration file.
        #[arg(long, short, env = "REGAUTH_CONFIG")]
        config: PathBuf,
    },
    /// Revoke a token by its id.
    Revoke {
        /// The JSON configuration file.
        #[arg(long, short, env = "REGAUTH_CONFIG")]
        config: PathBuf,
        /// The token's id, as `token list` shows it.
        id: String,
    },
}

fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let lifetime = humantime::parse_duration(text)
        .map_err(|error| format!("`{text}` is not a duration such as 30s, 12h or 90d: {error}"))?;
    if lifetime.is_zero() {
        return Err("the lifetime must be longer than zero".into());
    }
    if lifetime > MAX_LIFETIME {
        return Err("the lifetime must be at most ten years".into());
    }
    Ok(lifetime)
}

/// Runs one `token` subcommand.
pub fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            config,
            account,
            scopes,
            expires,
            description,
        } => create(&config, &account, &scopes, expires, &description),
        TokenCommand::List { config } => list(&config),
        TokenCommand::Revoke { config, id } => revoke(&config, &id),
    }
}

fn create(
    config_path: &Path,
    account: &str,
    scopes: &[String],
    lifetime: Option<Duration>,
    description: &str,
) -> anyhow::Result<()> {
    let (config, path) = token_file_of(config_path)?;
    crate::config::check_user_name(account).map_err(anyhow::Error::msg)?;
    if !user_exists(&config, account)? {
        bail!(
            "`{account}` is not a user of {}: a token logs in as an existing user \
             (for a robot, add a user with \"tokens_only\": true)",
            config_path.display()
        );
    }
    compile_scopes(scopes).map_err(anyhow::Error::msg)?;
    if description.chars().any(char::is_control) {
        bail!("the description must be one line without control characters");
    }
    let now = OffsetDateTime::now_utc().replace_nanosecond(0)?;
    let expires = lifetime.map(|lifetime| now + lifetime);
    let secret = new_secret();
    let record = edit(&path, |file| {
        let mut id = new_id();
        while file.tokens.iter().any(|token| token.id == id) {
            id = new_id();
        }
        let record = TokenRecord {
            id,
            account: account.to_owned(),
            scopes: scopes.to_vec(),
            expires,
            description: description.to_owned(),
            created: now,
            secret_sha256: secret.sha256_hex.clone(),
        };
        file.tokens.push(record.clone());
        Ok(record)
    })?;
    println!("{}", secret.secret.as_str());
    eprintln!(
        "created {} for {account} ({}), expires {}; the secret above is shown only now",
        record.id,
        scopes.join(" "),
        expiry_text(&record)
    );
    Ok(())
}

fn list(config_path: &Path) -> anyhow::Result<()> {
    let (_, path) = token_file_of(config_path)?;
    let file = read_token_file(&path)?;
    let now = OffsetDateTime::now_utc();
    for token in &file.tokens {
        let expired = if token.expires.is_some_and(|at| at <= now) {
            " (expired)"
        } else {
            ""
        };
        println!(
            "{}\t{}\t{}\t{}{expired}\t{}",
            token.id,
            token.account,
            token.scopes.join(" "),
            expiry_text(token),
            token.description
        );
    }
    Ok(())
}

fn revoke(config_path: &Path, id: &str) -> anyhow::Result<()> {
    let (_, path) = token_file_of(config_path)?;
    let removed = edit(&path, |file| {
        let before = file.tokens.len();
        file.tokens.retain(|token| token.id != id);
        if file.tokens.len() == before {
            bail!("no token has the id `{id}` (see `regauth token list`)");
        }
        Ok(())
    });
    removed?;
    eprintln!("revoked {id}; the server refuses it from its next reload on");
    Ok(())
}

fn expiry_text(token: &TokenRecord) -> String {
    token
        .expires
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "never".to_owned())
}

/// The config and the absolute path of the token file it names.
fn token_file_of(config_path: &Path) -> anyhow::Result<(crate::config::Config, PathBuf)> {
    let config_path = std::path::absolute(config_path)?;
    let config = read_config(&config_path)?;
    let Some(path) = config.api_tokens.clone() else {
        bail!(
            "{} names no token file: add \"api_tokens\": \"tokens.json\" (relative to the config)",
            config_path.display()
        );
    };
    Ok((config, path))
}

/// Whether `account` is an inline or htpasswd user.
fn user_exists(config: &crate::config::Config, account: &str) -> anyhow::Result<bool> {
    if config.users.contains_key(account) {
        return Ok(true);
    }
    let Some(htpasswd) = &config.htpasswd else {
        return Ok(false);
    };
    let text = fs::read_to_string(htpasswd)
        .with_context(|| format!("cannot read {}", htpasswd.display()))?;
    let entries = parse_htpasswd(&text).with_context(|| htpasswd.display().to_string())?;
    let users = Users::build([], entries)?;
    Ok(users.get(account).is_some())
}

/// Runs `change` on the token file under an exclusive lock of its
/// directory, then writes the result atomically.
fn edit<T>(
    path: &Path,
    change: impl FnOnce(&mut crate::identity::api_tokens::TokenFile) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    use nix::fcntl::{Flock, FlockArg};
    let directory = path
        .parent()
        .context("the token file path has no directory")?;
    let handle = fs::File::open(directory)
        .with_context(|| format!("cannot open {}", directory.display()))?;
    let _lock = Flock::lock(handle, FlockArg::LockExclusive)
        .map_err(|(_, errno)| errno)
        .with_context(|| format!("cannot lock {}", directory.display()))?;
    let mut file = read_token_file(path)?;
    let outcome = change(&mut file)?;
    write_token_file(path, &file)?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_humantime_and_bounded() {
        assert_eq!(parse_lifetime("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(
            parse_lifetime("12h").unwrap(),
            Duration::from_secs(12 * 3600)
        );
        assert_eq!(
            parse_lifetime("90d").unwrap(),
            Duration::from_secs(90 * 86400)
        );
        assert!(parse_lifetime("0s").is_err());
        assert!(parse_lifetime("11years").is_err());
        assert!(parse_lifetime("soon")
            .unwrap_err()
            .contains("30s, 12h or 90d"));
    }
}
