//! What `/auth` keeps of an access token once its signature has verified:
//! whom it names, until when, the groups it carries and the access it
//! grants. Issuer, audience, `nbf`, `iat` and `jti` were checked by
//! verification and are not needed after it, so they are dropped.
//!
//! The verified-token cache holds up to `auth.cache_capacity` of these, so
//! the value is built once, at insert, to be small: boxed names, one grant
//! per resource with its actions as [`Actions`] (a few bits for the
//! registry's own actions), the two usual resource types not allocated.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::mem::size_of;

use crate::acl::Actions;
use crate::scope::ResourceScope;
use crate::token::AccessClaims;

/// A verified access token, reduced to what `/auth` decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// Subject: the account name, `""` for anonymous.
    sub: Box<str>,
    /// Expiry, unix seconds.
    exp: i64,
    /// The `groups` claim (the account's groups when the token was issued).
    groups: Box<[String]>,
    /// One grant per resource (type, name): a token's entries for one
    /// resource add up, as the registry adds them.
    access: Box<[Grant]>,
}

/// What a token grants on one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Grant {
    /// Bare resource type (the class is ignored, as the registry ignores it).
    resource_type: Cow<'static, str>,
    /// Resource name.
    name: Box<str>,
    /// Every action the token's entries for this resource list.
    actions: Actions,
}

impl From<AccessClaims> for VerifiedToken {
    fn from(claims: AccessClaims) -> VerifiedToken {
        let mut by_resource: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
        for entry in &claims.access {
            by_resource
                .entry((&entry.resource_type, &entry.name))
                .or_default()
                .extend(entry.actions.iter().map(String::as_str));
        }
        let access = by_resource
            .into_iter()
            .map(|((resource_type, name), actions)| Grant {
                resource_type: resource_type_name(resource_type),
                name: name.into(),
                actions: Actions::from_listed(actions),
            })
            .collect();
        VerifiedToken {
            sub: claims.sub.into_boxed_str(),
            exp: claims.exp,
            groups: claims.groups.into_boxed_slice(),
            access,
        }
    }
}

/// The two resource types registries use, without an allocation.
fn resource_type_name(resource_type: &str) -> Cow<'static, str> {
    match resource_type {
        "repository" => Cow::Borrowed("repository"),
        "registry" => Cow::Borrowed("registry"),
        other => Cow::Owned(other.to_owned()),
    }
}

impl VerifiedToken {
    /// The subject: the account name, `""` for anonymous.
    pub fn subject(&self) -> &str {
        &self.sub
    }

    /// The token's `groups` claim; empty when it has none.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// Whether the token grants every action `needed` asks for, by the
    /// registry's rule: matched on (type, name), the class ignored, several
    /// entries for one resource added up. What the listed actions grant
    /// (the meaning of `*`) is for [`Actions`] to say.
    pub fn covers(&self, needed: &ResourceScope) -> bool {
        self.access
            .iter()
            .find(|grant| grant.resource_type == needed.resource_type && *grant.name == needed.name)
            .is_some_and(|grant| grant.actions.covers(&needed.actions))
    }

    /// The last unix second at which the token is accepted: its `exp` plus
    /// `leeway` seconds for clock skew, as verification allows.
    pub fn accepted_until(&self, leeway: i64) -> i64 {
        self.exp.saturating_add(leeway)
    }

    /// Whether the token has expired at `now` (unix seconds), `leeway`
    /// seconds of clock skew allowed: the same rule verification applies,
    /// for a token found verified in the cache.
    pub fn expired_at(&self, now: i64, leeway: i64) -> bool {
        now > self.accepted_until(leeway)
    }

    /// Bytes the token holds, its own and on the heap (allocator overhead
    /// aside), for the cache's weigher.
    pub fn size_bytes(&self) -> usize {
        let groups: usize = self
            .groups
            .iter()
            .map(|group| size_of::<String>() + group.len())
            .sum();
        let access: usize = self
            .access
            .iter()
            .map(|grant| {
                let owned_type = match &grant.resource_type {
                    Cow::Borrowed(_) => 0,
                    Cow::Owned(name) => name.len(),
                };
                size_of::<Grant>() + owned_type + grant.name.len() + grant.actions.heap_bytes()
            })
            .sum();
        size_of::<VerifiedToken>() + self.sub.len() + groups + access
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::parse_scope;
    use crate::token::AccessEntry;

    fn scope(text: &str) -> ResourceScope {
        parse_scope(text).unwrap()
    }

    /// The `access` entry granting a scope written as text.
    fn entry(text: &str) -> AccessEntry {
        AccessEntry::from(&scope(text))
    }

    fn token(access: Vec<AccessEntry>, groups: &[&str]) -> VerifiedToken {
        VerifiedToken::from(AccessClaims {
            iss: "issuer".into(),
            sub: "alice".into(),
            aud: "registry".into(),
            exp: 1_000,
            nbf: 0,
            iat: 0,
            jti: "jti".into(),
            access,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        })
    }

    #[test]
    fn coverage_follows_the_registry() {
        let token = token(
            vec![
                entry("repository:a:pull"),
                entry("repository:a:push"),
                entry("repository:b:*"),
                entry("registry:catalog:pull"),
                entry("repository:c:pull,vendor"),
                entry("plugin:d:pull"),
            ],
            &[],
        );
        assert!(
            token.covers(&scope("repository:a:pull,push")),
            "entries add up"
        );
        assert!(!token.covers(&scope("repository:a:delete")));
        assert!(
            token.covers(&scope("repository:b:delete")),
            "* grants every action"
        );
        assert!(token.covers(&scope("repository:b:*")));
        assert!(
            token.covers(&scope("repository(plugin):b:pull")),
            "class ignored"
        );
        assert!(
            !token.covers(&scope("repository:e:pull")),
            "unlisted resource"
        );
        assert!(
            !token.covers(&scope("registry:catalog:*")),
            "a needed * needs *"
        );
        assert!(
            token.covers(&scope("repository:c:vendor,pull")),
            "other actions kept"
        );
        assert!(!token.covers(&scope("repository:c:other")));
        assert!(
            token.covers(&scope("plugin:d:pull")),
            "other resource types kept"
        );
        assert!(
            !token.covers(&scope("repository:d:pull")),
            "types are not mixed up"
        );
    }

    #[test]
    fn keeps_subject_and_groups() {
        let token = token(vec![], &["devs", "ops"]);
        assert_eq!(token.subject(), "alice");
        assert_eq!(token.groups(), ["devs", "ops"]);
    }

    #[test]
    fn expires_after_exp_plus_leeway() {
        let token = token(vec![], &[]);
        assert_eq!(token.accepted_until(30), 1_030);
        assert!(!token.expired_at(1_000, 0), "valid through its exp second");
        assert!(token.expired_at(1_001, 0));
        assert!(!token.expired_at(1_030, 30), "leeway for clock skew");
        assert!(token.expired_at(1_031, 30));
        assert_eq!(token.accepted_until(i64::MAX), i64::MAX, "saturates");
    }

    #[test]
    fn size_counts_every_name() {
        let small = token(vec![entry("repository:a:pull")], &[]);
        let grouped = token(
            vec![entry("repository:a:pull")],
            &["g".repeat(100).as_str()],
        );
        assert!(grouped.size_bytes() >= small.size_bytes() + 100);
        let many = token(
            (0..100)
                .map(|i| entry(&format!("repository:team/app-{i}:pull,push")))
                .collect(),
            &[],
        );
        assert!(many.size_bytes() >= small.size_bytes() + 100 * size_of::<Grant>());
        let odd = token(vec![entry("plugin:a:vendor")], &[]);
        assert!(odd.size_bytes() >= small.size_bytes() + "plugin".len() + "vendor".len());
    }
}
