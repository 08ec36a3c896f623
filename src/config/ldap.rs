//! The `ldap` section: a directory (OpenLDAP, Active Directory, …) as a
//! source of users and groups. Every value is parsed into its typed form
//! here, so the directory client ([`crate::identity::ldap`]) never sees a
//! URL it cannot dial or a filter template it cannot fill.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Longest time one directory login may take before it is answered 503.
const MAX_TIMEOUT_SECS: u64 = 60;
/// Most connections regauth keeps to the directory at once.
const MAX_CONNECTIONS: usize = 64;

/// The `ldap` section of the config.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LdapSettings {
    /// `ldap://host[:port]` or `ldaps://host[:port]`.
    pub url: LdapUrl,
    /// Upgrade an `ldap://` connection with StartTLS before anything is sent.
    #[serde(default)]
    pub starttls: bool,
    /// PEM file of the CA certificates the directory's certificate must
    /// chain to; the system's roots when absent.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The service account regauth searches with.
    pub bind_dn: String,
    /// File holding the service account's password (one line; a trailing
    /// newline is ignored). Kept out of the config so the config can be
    /// world-readable.
    pub bind_password_file: PathBuf,
    /// Where users are searched (whole subtree).
    pub user_base: String,
    /// Search filter for one user; `{username}` is replaced by the name the
    /// client presented, escaped per RFC 4515.
    #[serde(default = "default_user_filter")]
    pub user_filter: FilterTemplate,
    /// Attribute holding the account name regauth uses (`uid` in
    /// OpenLDAP, `sAMAccountName` in Active Directory): the directory's
    /// spelling of the name, whatever case the client typed.
    #[serde(default = "default_username_attribute")]
    pub username_attribute: AttributeName,
    /// Attribute of the user entry listing the DNs of its groups.
    #[serde(default = "default_group_attribute")]
    pub group_attribute: AttributeName,
    /// Attribute naming a group: read from the first RDN of each group DN,
    /// or from the entries a `group_search` finds.
    #[serde(default = "default_group_name_attribute")]
    pub group_name_attribute: AttributeName,
    /// For directories without `memberOf`: search groups instead of
    /// reading `group_attribute`.
    #[serde(default)]
    pub group_search: Option<GroupSearch>,
    /// Bound on one whole login (connect, TLS, searches, binds), in
    /// seconds; past it the client gets 503 with `Retry-After`.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Most connections open to the directory at once; logins beyond it
    /// wait (within `timeout_secs`) for one to be free.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Which source decides a name that is both a file user (inline or
    /// htpasswd) and a directory user.
    #[serde(default)]
    pub precedence: Precedence,
}

/// Which source owns a name known to both the user files and the directory.
/// Only the owner checks the password: a password is never tried against
/// a second source after the first refused it.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Precedence {
    /// File users first: a name in the files never reaches the directory,
    /// so file users keep working while the directory is down, and a
    /// directory account whose name is also a file user's is refused.
    #[default]
    Files,
    /// The directory first: every password login asks the directory, and
    /// only names it does not know fall back to the files. While the
    /// directory is down every password login is answered 503.
    Ldap,
}

/// The optional group search.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GroupSearch {
    /// Where groups are searched (whole subtree).
    pub base: String,
    /// Filter for the user's groups: `{dn}` is the user's DN and
    /// `{username}` the account name, both escaped per RFC 4515.
    #[serde(default = "default_group_filter")]
    pub filter: FilterTemplate,
}

impl LdapSettings {
    /// The login bound as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// Whether the connection is encrypted (LDAPS or StartTLS).
    pub fn uses_tls(&self) -> bool {
        self.url.is_ldaps() || self.starttls
    }

    /// Checks what serde cannot: ranges and combinations. `Err` is
    /// (field below `ldap.`, reason).
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, reason: &str| Err((field.to_owned(), reason.to_owned()));
        if self.starttls && self.url.is_ldaps() {
            return fail(
                "starttls",
                "ldaps:// is already encrypted; use StartTLS with an ldap:// URL",
            );
        }
        if self.ca_file.is_some() && !self.uses_tls() {
            return fail(
                "ca_file",
                "the connection is not encrypted: use an ldaps:// URL or \"starttls\": true",
            );
        }
        for (field, value) in [("bind_dn", &self.bind_dn), ("user_base", &self.user_base)] {
            if value.trim().is_empty() || value.contains('\0') {
                return fail(field, "must be a non-empty DN");
            }
        }
        if let Some(search) = &self.group_search {
            if search.base.trim().is_empty() || search.base.contains('\0') {
                return fail("group_search.base", "must be a non-empty DN");
            }
            if !search.filter.uses("dn") && !search.filter.uses("username") {
                return fail(
                    "group_search.filter",
                    "must contain {dn} or {username}, or every user would get every group",
                );
            }
        }
        if !self.user_filter.uses("username") {
            return fail("user_filter", "must contain {username}");
        }
        if self.timeout_secs == 0 || self.timeout_secs > MAX_TIMEOUT_SECS {
            return fail("timeout_secs", "must be between 1 and 60");
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS {
            return fail("max_connections", "must be between 1 and 64");
        }
        Ok(())
    }
}

fn default_user_filter() -> FilterTemplate {
    FilterTemplate::parse("(&(objectClass=inetOrgPerson)(uid={username}))")
        .expect("the default user filter is valid")
}
fn default_group_filter() -> FilterTemplate {
    FilterTemplate::parse("(&(objectClass=groupOfNames)(member={dn}))")
        .expect("the default group filter is valid")
}
fn default_username_attribute() -> AttributeName {
    AttributeName("uid".into())
}
fn default_group_attribute() -> AttributeName {
    AttributeName("memberOf".into())
}
fn default_group_name_attribute() -> AttributeName {
    AttributeName("cn".into())
}
fn default_timeout_secs() -> u64 {
    5
}
fn default_max_connections() -> usize {
    8
}

/// A directory URL: scheme, host and port only (`ldap://h`, `ldaps://h:636`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct LdapUrl(url::Url);

impl LdapUrl {
    /// Whether the scheme is `ldaps`.
    pub fn is_ldaps(&self) -> bool {
        self.0.scheme() == "ldaps"
    }

    /// The URL as the client library takes it.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl TryFrom<String> for LdapUrl {
    type Error = String;

    fn try_from(text: String) -> Result<LdapUrl, String> {
        let url = url::Url::parse(&text)
            .map_err(|e| format!("`ldap.url`: `{text}` is not a URL ({e})"))?;
        if !matches!(url.scheme(), "ldap" | "ldaps") {
            return Err(format!(
                "`ldap.url`: the scheme must be ldap:// or ldaps://, not `{}`",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("`ldap.url`: names no host".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("`ldap.url`: credentials belong in bind_dn and bind_password_file".into());
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(
                "`ldap.url`: only scheme, host and port; search settings have their own fields"
                    .into(),
            );
        }
        Ok(LdapUrl(url))
    }
}

impl fmt::Display for LdapUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// An LDAP attribute description: a name (`memberOf`) or an OID.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct AttributeName(String);

impl AttributeName {
    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AttributeName {
    type Error = String;

    fn try_from(text: String) -> Result<AttributeName, String> {
        let keystring = text.starts_with(|c: char| c.is_ascii_alphabetic())
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let oid = !text.is_empty()
            && text
                .split('.')
                .all(|arc| !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()));
        if keystring || oid {
            Ok(AttributeName(text))
        } else {
            Err(format!(
                "`{text}` is not an LDAP attribute name (letters, digits and `-`, or an OID)"
            ))
        }
    }
}

/// A search filter with `{name}` placeholders, checked at load to be a
/// valid RFC 4515 filter once filled. Values are escaped when filled, so a
/// user name such as `*)(uid=*` matches only itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct FilterTemplate(String);

/// The placeholders a template may use.
const PLACEHOLDERS: [&str; 2] = ["username", "dn"];

impl FilterTemplate {
    /// Parses and checks a template.
    pub fn parse(text: &str) -> Result<FilterTemplate, String> {
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("filter `{text}`: `{{` without `}}`"))?;
            let name = &after[..close];
            if !PLACEHOLDERS.contains(&name) {
                return Err(format!(
                    "filter `{text}`: unknown placeholder `{{{name}}}` (known: {{username}}, {{dn}})"
                ));
            }
            rest = &after[close + 1..];
        }
        let template = FilterTemplate(text.to_owned());
        let sample = template.fill(&[("username", "x"), ("dn", "cn=x")]);
        let parenthesised = sample.starts_with('(') && sample.ends_with(')');
        if !parenthesised || ldap3::parse_filter(&sample).is_err() {
            return Err(format!(
                "filter `{text}` is not a valid LDAP filter (RFC 4515), e.g. `(uid={{username}})`"
            ));
        }
        Ok(template)
    }

    /// Whether the template uses `{name}`.
    pub fn uses(&self, name: &str) -> bool {
        self.0.contains(&format!("{{{name}}}"))
    }

    /// The filter with each `{name}` replaced by its value, escaped per
    /// RFC 4515 (`*`, `(`, `)`, `\` and NUL become `\2a`, `\28`, `\29`,
    /// `\5c`, `\00`). Placeholders are replaced in one pass, so a value
    /// that itself contains `{dn}` is never expanded again.
    pub fn fill(&self, values: &[(&str, &str)]) -> String {
        let mut out = String::with_capacity(self.0.len() + 32);
        let mut rest = self.0.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            // parse() guarantees a closing brace and a known name.
            let close = after.find('}').unwrap_or(after.len());
            let name = &after[..close];
            let value = values
                .iter()
                .find(|(key, _)| *key == name)
                .map_or("", |(_, value)| *value);
            out.push_str(&ldap3::ldap_escape(value));
            rest = after.get(close + 1..).unwrap_or("");
        }
        out.push_str(rest);
        out
    }
}

impl TryFrom<String> for FilterTemplate {
    type Error = String;

    fn try_from(text: String) -> Result<FilterTemplate, String> {
        FilterTemplate::parse(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(json: &str) -> Result<LdapSettings, String> {
        let settings: LdapSettings = serde_json::from_str(json).map_err(|e| e.to_string())?;
        settings.check().map_err(|(f, r)| format!("{f}: {r}"))?;
        Ok(settings)
    }

    const ISSUE_EXAMPLE: &str = r#"{
        "url": "ldaps://ldap.example.org", "starttls": false, "ca_file": "ca.pem",
        "bind_dn": "cn=regauth,ou=services,dc=example,dc=org",
        "bind_password_file": "ldap.secret", "user_base": "ou=people,dc=example,dc=org",
        "user_filter": "(&(objectClass=inetOrgPerson)(uid={username}))",
        "group_attribute": "memberOf", "group_name_attribute": "cn", "timeout_secs": 5 }"#;

    #[test]
    fn the_issue_example_parses_with_defaults() {
        let s = settings(ISSUE_EXAMPLE).unwrap();
        assert!(s.url.is_ldaps());
        assert!(s.uses_tls());
        assert_eq!(s.username_attribute.as_str(), "uid");
        assert_eq!(s.precedence, Precedence::Files);
        assert_eq!(s.max_connections, 8);
        assert_eq!(s.timeout(), Duration::from_secs(5));
        assert!(s.group_search.is_none());
    }

    #[test]
    fn filter_values_are_escaped_per_rfc_4515() {
        let t = FilterTemplate::parse("(&(objectClass=person)(uid={username}))").unwrap();
        assert_eq!(
            t.fill(&[("username", "alice")]),
            "(&(objectClass=person)(uid=alice))"
        );
        assert_eq!(
            t.fill(&[("username", "*)(uid=*")]),
            "(&(objectClass=person)(uid=\\2a\\29\\28uid=\\2a))"
        );
        assert_eq!(
            t.fill(&[("username", "a\\b\0")]),
            "(&(objectClass=person)(uid=a\\5cb\\00))"
        );
        // Non-ASCII passes as UTF-8, which RFC 4515 allows unescaped.
        assert_eq!(
            t.fill(&[("username", "zoë")]),
            "(&(objectClass=person)(uid=zoë))"
        );
        // One pass: a value containing a placeholder stays literal.
        let g = FilterTemplate::parse("(|(member={dn})(memberUid={username}))").unwrap();
        assert_eq!(
            g.fill(&[("dn", "cn=a\\,b,dc=x"), ("username", "{dn}")]),
            "(|(member=cn=a\\5c,b,dc=x)(memberUid={dn}))"
        );
        // Every filled value parses as a filter.
        for hostile in ["*", "(", ")", "\\", "a)(|(uid=*", "\u{0}"] {
            let filled = t.fill(&[("username", hostile)]);
            assert!(ldap3::parse_filter(&filled).is_ok(), "{filled}");
        }
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(FilterTemplate::parse("(uid={user})")
            .unwrap_err()
            .contains("unknown"));
        assert!(FilterTemplate::parse("(uid={username)").is_err());
        assert!(FilterTemplate::parse("uid={username}").is_err());
        assert!(FilterTemplate::parse("(&(uid={username})").is_err());
        let no_user = ISSUE_EXAMPLE.replace("(uid={username})", "(uid=x)");
        assert!(settings(&no_user).unwrap_err().contains("user_filter"));
    }

    #[test]
    fn urls_are_checked() {
        for (url, wanted) in [
            ("http://ldap.example.org", "scheme"),
            ("ldap://", "host"),
            ("ldap://u:p@h", "credentials"),
            ("ldap://h/dc=example?uid", "only scheme"),
            ("not a url", "not a URL"),
        ] {
            let json = ISSUE_EXAMPLE.replace("ldaps://ldap.example.org", url);
            let error = settings(&json).unwrap_err();
            assert!(error.contains(wanted), "{url}: {error}");
        }
        let plain = ISSUE_EXAMPLE
            .replace("ldaps://ldap.example.org", "ldap://127.0.0.1:3389")
            .replace("\"ca_file\": \"ca.pem\",", "");
        let s = settings(&plain).unwrap();
        assert!(!s.uses_tls());
        assert_eq!(s.url.to_string(), "ldap://127.0.0.1:3389");
    }

    #[test]
    fn combinations_and_ranges_are_checked() {
        let both = ISSUE_EXAMPLE.replace("\"starttls\": false", "\"starttls\": true");
        assert!(settings(&both).unwrap_err().starts_with("starttls"));
        let ca_in_clear = ISSUE_EXAMPLE.replace("ldaps://", "ldap://");
        assert!(settings(&ca_in_clear).unwrap_err().starts_with("ca_file"));
        let starttls = ca_in_clear.replace("\"starttls\": false", "\"starttls\": true");
        assert!(settings(&starttls).unwrap().uses_tls());
        for (from, to, field) in [
            ("\"timeout_secs\": 5", "\"timeout_secs\": 0", "timeout_secs"),
            (
                "\"timeout_secs\": 5",
                "\"timeout_secs\": 61",
                "timeout_secs",
            ),
            (
                "\"timeout_secs\": 5",
                "\"max_connections\": 0",
                "max_connections",
            ),
            (
                "\"user_base\": \"ou=people,dc=example,dc=org\"",
                "\"user_base\": \" \"",
                "user_base",
            ),
        ] {
            let error = settings(&ISSUE_EXAMPLE.replace(from, to)).unwrap_err();
            assert!(error.starts_with(field), "{to}: {error}");
        }
        let bad_attribute = ISSUE_EXAMPLE.replace("\"memberOf\"", "\"member of\"");
        assert!(settings(&bad_attribute).unwrap_err().contains("attribute"));
        let unknown = ISSUE_EXAMPLE.replace("\"timeout_secs\"", "\"timeout\"");
        assert!(settings(&unknown).unwrap_err().contains("timeout"));
        let oid = ISSUE_EXAMPLE.replace("\"memberOf\"", "\"1.2.840.113556.1.4.222\"");
        assert!(settings(&oid).is_ok());
    }

    #[test]
    fn group_search_needs_the_user_in_its_filter() {
        let with = |search: &str| {
            ISSUE_EXAMPLE.replace(
                "\"timeout_secs\": 5",
                &format!("\"timeout_secs\": 5, \"group_search\": {search}"),
            )
        };
        let s = settings(&with(r#"{"base": "ou=groups,dc=example,dc=org"}"#)).unwrap();
        let search = s.group_search.unwrap();
        assert!(search.filter.uses("dn"));
        let everyone = with(r#"{"base": "ou=g", "filter": "(objectClass=groupOfNames)"}"#);
        assert!(settings(&everyone)
            .unwrap_err()
            .starts_with("group_search.filter"));
        let posix = with(
            r#"{"base": "ou=g", "filter": "(&(objectClass=posixGroup)(memberUid={username}))"}"#,
        );
        assert!(settings(&posix).is_ok());
        let precedence = ISSUE_EXAMPLE.replace("\"timeout_secs\": 5", "\"precedence\": \"ldap\"");
        assert_eq!(settings(&precedence).unwrap().precedence, Precedence::Ldap);
    }
}
