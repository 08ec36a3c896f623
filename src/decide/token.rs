//! What a token grants: the requested access ∩ what the ACL allows the
//! caller ∩ the identity's scope limit, and whether a refresh token goes
//! with it.

use crate::acl::{Acl, Subject};
use crate::identity::Identity;
use crate::scope::ResourceScope;

/// What the request asks for besides access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshAsked<'a> {
    /// No refresh token.
    No,
    /// A new one (offline access).
    New,
    /// The one presented, handed back unchanged: a refresh token never
    /// renews itself, and clients such as dockerd cannot store a rotated
    /// one (moby #39718).
    Same(&'a str),
}

/// The refresh token that goes into the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh<'a> {
    /// None.
    No,
    /// A new one bound to this (the identity's refresh binding).
    Issue {
        /// What the new token is bound to.
        binding: &'a str,
    },
    /// The presented one, unchanged.
    Echo(&'a str),
}

/// What a token request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant<'a> {
    /// The access the token carries; resources with nothing granted are
    /// left out.
    pub access: Vec<ResourceScope>,
    /// The refresh token of the answer.
    pub refresh: Refresh<'a>,
}

/// What `identity` (`None`: anonymous) gets for `requested` under `acl`.
pub fn grant<'a>(
    identity: Option<&'a Identity>,
    requested: &[ResourceScope],
    refresh: RefreshAsked<'a>,
    acl: &Acl,
) -> Grant<'a> {
    let subject = identity.map_or(Subject::anonymous(), Identity::subject);
    let mut access = acl.grant(&subject, requested);
    if let Some(limit) = identity.and_then(|identity| identity.scope_limit.as_deref()) {
        access = limit.grant(&subject, &access);
    }
    let binding = identity.and_then(|identity| identity.refresh_binding.as_deref());
    let refresh = match (refresh, binding) {
        (RefreshAsked::No, _) => Refresh::No,
        (RefreshAsked::Same(presented), _) => Refresh::Echo(presented),
        (RefreshAsked::New, Some(binding)) => Refresh::Issue { binding },
        // Anonymous callers have nothing to refresh, and identities without
        // a binding cannot have one.
        (RefreshAsked::New, None) => Refresh::No,
    };
    Grant { access, refresh }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::acl::RuleSpec;
    use crate::identity::Source;
    use crate::scope::parse_scopes;

    fn acl(json: &str) -> Acl {
        let specs: Vec<RuleSpec> = serde_json::from_str(json).unwrap();
        Acl::compile(&specs).unwrap()
    }

    fn alice() -> Identity {
        Identity {
            account: "alice".into(),
            groups: vec![],
            source: Source::File,
            refresh_binding: Some("fingerprint".into()),
            scope_limit: None,
        }
    }

    fn granted(grant: &Grant) -> String {
        let texts: Vec<String> = grant.access.iter().map(ToString::to_string).collect();
        texts.join(" ")
    }

    const RULES: &str = r#"[
        { "account": "*", "name": "${account}/**", "actions": ["*"] },
        { "name": "public/**", "actions": ["pull"] }
    ]"#;

    #[test]
    fn the_grant_is_what_was_asked_and_allowed() {
        let acl = acl(RULES);
        let requested =
            parse_scopes(["repository:alice/app:pull,push repository:public/x:pull,push"]).unwrap();
        let alice = alice();
        let grant = grant(Some(&alice), &requested, RefreshAsked::No, &acl);
        assert_eq!(
            granted(&grant),
            "repository:alice/app:pull,push repository:public/x:pull"
        );
        let anonymous = super::grant(None, &requested, RefreshAsked::No, &acl);
        assert_eq!(granted(&anonymous), "repository:public/x:pull");
    }

    #[test]
    fn a_scope_limit_narrows_the_grant_star_included() {
        let acl = acl(RULES);
        let mut limited = alice();
        limited.scope_limit = Some(Arc::new(self::acl(
            r#"[{ "name": "alice/app", "actions": ["pull"] }]"#,
        )));
        let requested = parse_scopes(["repository:alice/app:* repository:alice/b:pull"]).unwrap();
        let grant = grant(Some(&limited), &requested, RefreshAsked::No, &acl);
        assert_eq!(granted(&grant), "repository:alice/app:pull");
    }

    #[test]
    fn refresh_tokens_need_a_binding_and_never_renew_themselves() {
        let acl = acl(RULES);
        let alice = alice();
        assert_eq!(
            grant(Some(&alice), &[], RefreshAsked::New, &acl).refresh,
            Refresh::Issue {
                binding: "fingerprint"
            }
        );
        assert_eq!(
            grant(None, &[], RefreshAsked::New, &acl).refresh,
            Refresh::No
        );
        let mut unbound = self::alice();
        unbound.refresh_binding = None;
        assert_eq!(
            grant(Some(&unbound), &[], RefreshAsked::New, &acl).refresh,
            Refresh::No
        );
        assert_eq!(
            grant(Some(&alice), &[], RefreshAsked::Same("old"), &acl).refresh,
            Refresh::Echo("old")
        );
        assert_eq!(
            grant(Some(&alice), &[], RefreshAsked::No, &acl).refresh,
            Refresh::No
        );
    }
}
