//! The user table: inline users from the config merged with an htpasswd
//! file. Pure data; password checks live in [`crate::identity::files`].

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};

use crate::config::{check_user_name, is_bcrypt_hash, UserSpec};

/// Why a user table could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// A line of the htpasswd file is not `name:bcrypt-hash`.
    #[error("htpasswd line {line}: {reason}")]
    HtpasswdLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong; never contains the hash itself.
        reason: String,
    },
    /// The same user is defined twice.
    #[error("user `{0}` is defined twice (inline users and htpasswd merge; names must be unique)")]
    Duplicate(String),
}

/// One user as the server needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The bcrypt hash of the password.
    pub password_hash: String,
    /// Groups the ACL can match on.
    pub groups: Vec<String>,
    /// Whether only API tokens log in as this user (its password is refused).
    pub tokens_only: bool,
}

impl User {
    /// A short digest of the stored password hash. Refresh tokens carry it,
    /// so a password change (or removal) makes them stop working without
    /// any server-side token store.
    pub fn credential_fingerprint(&self) -> String {
        let digest = Sha256::digest(self.password_hash.as_bytes());
        data_encoding::BASE64URL_NOPAD.encode(&digest[..16])
    }
}

/// All known users by name.
#[derive(Debug, Clone)]
pub struct Users {
    by_name: HashMap<String, User>,
    /// Checked against when a name is unknown, so that it costs the same
    /// bcrypt work as a wrong password: a hash of a random secret, at the
    /// cost most users' hashes have.
    unknown_user_hash: String,
}

impl Users {
    /// Merges inline users with the parsed htpasswd entries.
    pub fn build<'a>(
        inline: impl IntoIterator<Item = (&'a String, &'a UserSpec)>,
        htpasswd: Vec<(String, String)>,
    ) -> Result<Users, UserError> {
        let mut by_name = HashMap::new();
        for (name, spec) in inline {
            let user = User {
                password_hash: spec.password.clone(),
                groups: spec.groups.clone(),
                tokens_only: spec.tokens_only,
            };
            by_name.insert(name.clone(), user);
        }
        for (name, password_hash) in htpasswd {
            if by_name.contains_key(&name) {
                return Err(UserError::Duplicate(name));
            }
            let user = User {
                password_hash,
                groups: Vec::new(),
                tokens_only: false,
            };
            by_name.insert(name, user);
        }
        let unknown_user_hash = unknown_user_hash(&by_name);
        Ok(Users {
            by_name,
            unknown_user_hash,
        })
    }

    /// The hash an unknown user's password is checked against.
    pub fn unknown_user_hash(&self) -> &str {
        &self.unknown_user_hash
    }

    /// How many users have each bcrypt cost. Mixed costs let response times
    /// tell users apart; `check-config` warns about them.
    pub fn bcrypt_costs(&self) -> BTreeMap<u32, usize> {
        bcrypt_costs(&self.by_name)
    }

    /// The user of that name, if any.
    pub fn get(&self, name: &str) -> Option<&User> {
        self.by_name.get(name)
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are no users at all.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

fn bcrypt_costs(users: &HashMap<String, User>) -> BTreeMap<u32, usize> {
    let mut costs = BTreeMap::new();
    for user in users.values() {
        if let Ok(parts) = user.password_hash.parse::<bcrypt::HashParts>() {
            *costs.entry(parts.get_cost()).or_insert(0) += 1;
        }
    }
    costs
}

/// A fresh hash of a random secret at the most common cost among `users`
/// (bcrypt's default when there are none).
fn unknown_user_hash(users: &HashMap<String, User>) -> String {
    let cost = bcrypt_costs(users)
        .iter()
        .max_by_key(|(cost, count)| (**count, **cost))
        .map_or(bcrypt::DEFAULT_COST, |(cost, _)| *cost);
    let secret: [u8; 32] = rand::random();
    // Hashing 32 random bytes at a cost taken from valid hashes cannot
    // fail; were it to, an unmatchable string still refuses every password.
    bcrypt::hash(secret, cost).unwrap_or_else(|_| "!".to_owned())
}

/// Parses an htpasswd file. Only bcrypt lines are accepted: the other
/// htpasswd formats (MD5-crypt, SHA-1, crypt) are too weak to offer.
/// Blank lines and `#` comments are skipped.
pub fn parse_htpasswd(text: &str) -> Result<Vec<(String, String)>, UserError> {
    let mut entries = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let error = |reason: &str| UserError::HtpasswdLine {
            line: index + 1,
            reason: reason.to_owned(),
        };
        let (name, hash) = line
            .split_once(':')
            .ok_or_else(|| error("expected `name:hash`"))?;
        check_user_name(name).map_err(|reason| error(&reason))?;
        if !is_bcrypt_hash(hash) {
            return Err(error(
                "only bcrypt hashes are accepted (htpasswd -B, or `regauth hash-password`)",
            ));
        }
        entries.push((name.to_owned(), hash.to_owned()));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$10$iRxq4as0aXEICViLH46Uhu.TuA/9/2EEWcq.d5vwRDBJMy3xv1gFq";

    #[test]
    fn htpasswd_bcrypt_lines_parse() {
        let text = format!("# comment\n\nalice:{HASH}\nbob:{HASH}\n");
        let entries = parse_htpasswd(&text).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].0, "bob");
    }

    #[test]
    fn htpasswd_other_hash_kinds_are_refused_by_line() {
        let text = format!("alice:{HASH}\nbob:$apr1$xyz$abc\n");
        let message = parse_htpasswd(&text).unwrap_err().to_string();
        assert!(message.contains("line 2"), "{message}");
        assert!(
            !message.contains("apr1"),
            "the hash must not be echoed: {message}"
        );
        assert!(parse_htpasswd("no-colon-here").is_err());
    }

    #[test]
    fn duplicates_between_sources_are_refused() {
        let spec = UserSpec {
            password: HASH.into(),
            groups: vec!["staff".into()],
            tokens_only: false,
        };
        let name = "alice".to_owned();
        let error = Users::build([(&name, &spec)], vec![("alice".into(), HASH.into())]);
        assert!(matches!(error, Err(UserError::Duplicate(n)) if n == "alice"));
        let users = Users::build([(&name, &spec)], vec![("bob".into(), HASH.into())]).unwrap();
        assert_eq!(users.get("alice").unwrap().groups, vec!["staff".to_owned()]);
        assert!(users.get("bob").unwrap().groups.is_empty());
    }

    #[test]
    fn unknown_users_cost_what_most_users_cost() {
        let cheap = bcrypt::hash("x", 4).unwrap();
        let spec = |password: &str| UserSpec {
            password: password.to_owned(),
            groups: vec![],
            tokens_only: false,
        };
        let (a, b) = ("a".to_owned(), "b".to_owned());
        let (sa, sb) = (spec(&cheap), spec(&cheap));
        let users = Users::build([(&a, &sa), (&b, &sb)], vec![("c".into(), HASH.into())]).unwrap();
        let dummy: bcrypt::HashParts = users.unknown_user_hash().parse().unwrap();
        assert_eq!(dummy.get_cost(), 4);
        assert_eq!(users.bcrypt_costs(), BTreeMap::from([(4, 2), (10, 1)]));
        let other = Users::build([(&a, &sa)], vec![]).unwrap();
        assert_ne!(
            users.unknown_user_hash(),
            other.unknown_user_hash(),
            "fresh salt"
        );
    }

    #[test]
    fn fingerprint_changes_with_the_password() {
        let a = User {
            password_hash: HASH.into(),
            groups: vec![],
            tokens_only: false,
        };
        let b = User {
            password_hash: HASH.replace("gFq", "gFr"),
            groups: vec![],
            tokens_only: false,
        };
        assert_ne!(a.credential_fingerprint(), b.credential_fingerprint());
        assert_eq!(a.credential_fingerprint().len(), 22);
    }

    /// Issue 8 item 5: names that could escape their `${account}` namespace
    /// are refused at load, inline and in htpasswd files alike, naming why.
    #[test]
    fn names_that_are_not_one_path_component_are_refused_at_load() {
        for name in [
            "alice/team",
            "..",
            ".",
            "Alice",
            "a*",
            "a@b.org",
            "-a",
            "a b",
        ] {
            let message = parse_htpasswd(&format!("{name}:{HASH}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                message.contains("line 1") && message.contains("account name"),
                "htpasswd {name:?}: {message}"
            );
            let config = serde_json::json!({
                "service": "registry.test",
                "issuer": "regauth",
                "realm": "https://registry.test/token",
                "token": { "algorithm": "ES256", "private_key": "token.key" },
                "users": { name: { "password": HASH } }
            });
            let message = crate::config::Config::parse(
                &config.to_string(),
                std::path::Path::new("/etc/regauth"),
            )
            .unwrap_err()
            .to_string();
            assert!(
                message.contains(&format!("users.{name}")) && message.contains("path component"),
                "inline {name:?}: {message}"
            );
        }
        assert!(parse_htpasswd(&format!("ci-bot.2:{HASH}\n")).is_ok());
    }
}
