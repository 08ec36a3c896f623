//! What the types cannot say alone: rules between several fields, and text
//! kept as text (names, paths, challenge parameters). Each value's own
//! range and syntax is checked by its type while it is deserialized
//! ([`super::values`], [`super::listen`]).

use super::{invalid, Config, ConfigError};

impl Config {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        check_challenge_value("service", &self.service)?;
        check_challenge_value("issuer", &self.issuer)?;
        check_challenge_value("realm", &self.realm)?;
        if !(self.realm.starts_with("http://") || self.realm.starts_with("https://")) {
            return Err(invalid("realm", "must be an http:// or https:// URL"));
        }
        if self.token.refresh_expiration.secs() < self.token.expiration.secs() {
            return Err(invalid(
                "token.refresh_expiration_secs",
                "must not be shorter than token.expiration_secs",
            ));
        }
        check_path("token_path", &self.token_path)?;
        self.validate_auth()?;
        if self.listen.is_empty() {
            return Err(invalid("listen", "needs at least one address"));
        }
        for (name, user) in &self.users {
            check_user_name(name).map_err(|e| invalid(format!("users.{name}"), e))?;
            if !is_bcrypt_hash(&user.password) {
                return Err(invalid(
                    format!("users.{name}.password"),
                    "must be a bcrypt hash ($2a$, $2b$ or $2y$); make one with `regauth hash-password`",
                ));
            }
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let auth = &self.auth;
        check_path("auth.path", &auth.path)?;
        if auth.path == self.token_path {
            return Err(invalid("auth.path", "must differ from token_path"));
        }
        if let Some(name) = &auth.anonymous_user {
            http::HeaderValue::from_str(name)
                .map_err(|_| invalid("auth.anonymous_user", "must be printable ASCII"))?;
        }
        Ok(())
    }
}

/// Whether `hash` looks like a bcrypt hash. The bcrypt crate checks it fully
/// when verifying; this catches other hash kinds at load time, where an
/// error can still name the field or line.
pub fn is_bcrypt_hash(hash: &str) -> bool {
    let known_prefix = ["$2a$", "$2b$", "$2y$"]
        .iter()
        .any(|prefix| hash.starts_with(prefix));
    known_prefix && hash.len() == 60 && hash.parse::<bcrypt::HashParts>().is_ok()
}

/// A user name must be one repository path component (see
/// [`crate::acl::AccountName`]); that also makes it usable in Basic
/// credentials and in an HTTP header.
pub fn check_user_name(name: &str) -> Result<(), String> {
    // One repository path component: `${account}` in ACL name patterns
    // expands to it, so a name such as `alice/team` or `..` would reach into
    // a namespace it does not own. This also keeps out `:` (Basic
    // credentials split on it), spaces and control characters.
    crate::acl::AccountName::parse(name)
        .map(|_| ())
        .map_err(|error| error.to_string())
}

/// Challenge parameters are quoted strings: keep them plain.
fn check_challenge_value(field: &str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        return Err(invalid(
            field,
            "must be printable ASCII without spaces, quotes or backslashes (it is quoted in WWW-Authenticate)",
        ));
    }
    Ok(())
}

fn check_path(field: &str, path: &str) -> Result<(), ConfigError> {
    if !path.starts_with('/') || path.len() < 2 || path.contains(['?', '#', ' ']) {
        return Err(invalid(field, "must be an absolute path such as /token"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::{json, Value};

    use super::*;

    fn minimal() -> Value {
        json!({
            "service": "registry.test",
            "issuer": "regauth",
            "realm": "https://registry.test/token",
            "token": { "algorithm": "ES256", "private_key": "keys/token.key" }
        })
    }

    /// `minimal()` with `value` at the dotted `field`.
    fn with(field: &str, value: Value) -> Value {
        let mut doc = minimal();
        let mut slot = &mut doc;
        for part in field.split('.') {
            slot = &mut slot[part];
        }
        *slot = value;
        doc
    }

    fn check(doc: &Value) -> Result<Config, ConfigError> {
        Config::parse(&doc.to_string(), Path::new("/etc/regauth"))
    }

    #[test]
    fn log_level_must_be_a_filter() {
        assert!(check(&with("log.level", json!("regauth=debug,info"))).is_ok());
        let message = check(&with("log.level", json!("regauth=loudest")))
            .unwrap_err()
            .to_string();
        assert!(message.contains("log.level"), "{message}");
    }

    /// Every bounded setting: its bound is accepted, one more is refused
    /// with a message naming the field and the bound.
    #[test]
    fn upper_bounds_accept_the_bound_and_refuse_more() {
        let ten_years = 10 * 365 * 86400_u64;
        let bounds: [(&str, u64); 8] = [
            ("credential_cache_secs", 86400),
            ("token.expiration_secs", 86400),
            ("token.refresh_expiration_secs", ten_years),
            ("auth.leeway_secs", 3600),
            ("auth.cache_capacity", 10_000_000),
            ("limits.header_read_timeout_secs", 3600),
            ("limits.shutdown_grace_secs", 3600),
            ("limits.max_connections", 1_000_000),
        ];
        for (field, max) in bounds {
            let at_bound = with(field, json!(max));
            check(&at_bound).unwrap_or_else(|e| panic!("{field} = {max}: {e}"));
            let over = with(field, json!(max + 1));
            let message = check(&over)
                .err()
                .unwrap_or_else(|| panic!("{field} = {} accepted", max + 1))
                .to_string();
            assert!(
                message.contains(&format!("`{field}`")) && message.contains(&max.to_string()),
                "{field}: {message}"
            );
        }
    }

    /// The value from the bug report, which made `serve` panic in the cache.
    #[test]
    fn a_thousand_year_credential_cache_is_refused() {
        let message = check(&with("credential_cache_secs", json!(100_000_000_000_u64)))
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "field `credential_cache_secs`: must be at most 86400 (one day) (line 1, column 37)"
        );
    }

    /// Values that would overflow the server's clock arithmetic.
    #[test]
    fn huge_values_are_refused_not_wrapped() {
        for field in [
            "token.expiration_secs",
            "token.refresh_expiration_secs",
            "auth.leeway_secs",
            "limits.header_read_timeout_secs",
            "limits.shutdown_grace_secs",
            "limits.max_connections",
        ] {
            let message = check(&with(field, json!(u64::MAX)))
                .unwrap_err()
                .to_string();
            assert!(message.contains(field), "{field}: {message}");
        }
    }

    #[test]
    fn header_names_are_parsed_with_the_field_named() {
        let config = check(&with("auth.uri_header", json!("X-Forwarded-Uri"))).unwrap();
        assert_eq!(config.auth.uri_header.name(), "x-forwarded-uri");
        for field in [
            "auth.uri_header",
            "auth.user_header",
            "auth.trusted_user_header",
        ] {
            let message = check(&with(field, json!("Remote User")))
                .unwrap_err()
                .to_string();
            assert!(
                message.starts_with(&format!(
                    "field `{field}`: `Remote User` is not a valid header name"
                )),
                "{message}"
            );
        }
    }

    #[test]
    fn a_refresh_lifetime_shorter_than_the_token_is_refused() {
        let mut doc = with("token.expiration_secs", json!(3600));
        doc["token"]["refresh_expiration_secs"] = json!(600);
        let message = check(&doc).unwrap_err().to_string();
        assert!(
            message.contains("token.refresh_expiration_secs"),
            "{message}"
        );
    }

    #[test]
    fn lower_bounds_still_hold() {
        for (field, value) in [
            ("auth.cache_capacity", 0),
            ("limits.max_connections", 0),
            ("limits.header_read_timeout_secs", 0),
            ("token.expiration_secs", 59),
        ] {
            let message = check(&with(field, json!(value))).unwrap_err().to_string();
            assert!(message.contains(field), "{field}: {message}");
        }
    }
}
