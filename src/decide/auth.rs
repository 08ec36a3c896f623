//! What `/auth` answers: allow (and as whom), challenge (a better credential
//! may help: 401) or deny (none can: 403), from who asks and what the
//! original request needs.

use std::sync::Arc;

use crate::acl::{Acl, Subject};
use crate::identity::{Identity, IdentityError};
use crate::route::{ManifestWrite, Reference};
use crate::scope::ResourceScope;
use crate::verified_token::VerifiedToken;

/// Who asks, once the HTTP layer has checked what the request presented.
pub enum Caller {
    /// Nothing presented (Basic mode): the ACL's anonymous rules decide.
    Anonymous,
    /// Authenticated by the identity seam, or named by a trusted front
    /// proxy.
    Identified(Identity),
    /// A bearer token that verified (shared with the verified-token cache).
    Bearer(Arc<VerifiedToken>),
    /// What was presented proves nothing.
    Unproven(Unproven),
}

/// Why a presented credential proves nothing.
pub enum Unproven {
    /// No credential of the kind this mode takes (the registry treats
    /// anything but a bearer token as no token).
    Missing(&'static str),
    /// A bearer token that did not verify; the reason is safe to log.
    InvalidToken(String),
    /// The identity seam refused Basic credentials of this account.
    Refused {
        /// The user name presented.
        account: String,
        /// Why.
        error: IdentityError,
    },
}

/// What `/auth` answers.
#[derive(Debug)]
pub enum Decision {
    /// 200: let the request through as this user (`None`: anonymous).
    Allow {
        /// The account, for the user header.
        user: Option<String>,
        /// The account's groups, for the groups header: the identity's, or
        /// in token mode the token's `groups` claim (as of its issue).
        groups: Vec<String>,
    },
    /// 401: a (better) credential may help.
    Challenge {
        /// The Bearer challenge's `error` parameter.
        error: Option<&'static str>,
        /// Why, for the audit log.
        reason: String,
        /// Who asked, when known (for the audit log).
        account: Option<String>,
    },
    /// 403: no credential can help.
    Deny {
        /// Why; also told to the client.
        reason: String,
        /// Who asked, when known (for the audit log).
        account: Option<String>,
    },
    /// The identity seam could not say who asks (limited, a source down,
    /// our own failure); answered as the edge maps [`IdentityError`]s.
    Unidentified {
        /// Why.
        error: IdentityError,
        /// Who asked (for the audit log).
        account: Option<String>,
    },
}

impl Decision {
    /// An original request that cannot be mapped to the access it needs
    /// (unknown route, hazardous path, a form body): no credential helps.
    pub fn unroutable(reason: String) -> Decision {
        Decision::Deny {
            reason,
            account: None,
        }
    }

    /// The `outcome` of audit logs and metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Decision::Allow { .. } => "allow",
            Decision::Challenge { .. } => "challenge",
            Decision::Deny { .. } => "deny",
            Decision::Unidentified { error, .. } => error.outcome(),
        }
    }

    /// Who asked, as far as known; `""` for nobody.
    pub fn account(&self) -> &str {
        let account = match self {
            Decision::Allow { user, .. } => user,
            Decision::Challenge { account, .. }
            | Decision::Deny { account, .. }
            | Decision::Unidentified { account, .. } => account,
        };
        account.as_deref().unwrap_or_default()
    }

    /// Why it was not an allow, for the audit log; `""` for an allow.
    pub fn reason(&self) -> String {
        match self {
            Decision::Allow { .. } => String::new(),
            Decision::Challenge { reason, .. } | Decision::Deny { reason, .. } => reason.clone(),
            Decision::Unidentified { error, .. } => error.detail(),
        }
    }
}

/// A manifest write being decided, for ACL rules with `tags`/`digests`
/// (tokens cannot carry a tag, so `/auth` checks those rules itself).
#[derive(Debug, Clone, Copy)]
pub struct WriteCheck<'a> {
    /// What the request writes.
    pub write: &'a ManifestWrite,
    /// The groups of a bearer token's subject: its `groups` claim, or the
    /// configured user's for a token without one; ignored for other callers.
    pub token_groups: &'a [String],
}

/// What `/auth` answers a `caller` whose original request needs `needed`
/// and, for a manifest write, writes what `write` says.
pub fn decide(
    caller: Caller,
    needed: &[ResourceScope],
    write: Option<WriteCheck>,
    acl: &Acl,
) -> Decision {
    match caller {
        Caller::Identified(identity) => by_acl(Some(&identity), needed, write, acl),
        // The `/v2/` ping must challenge, or clients never learn that they
        // could send credentials; anything else anonymous may do, it may.
        Caller::Anonymous if needed.is_empty() => Decision::Challenge {
            error: None,
            reason: "no credentials".into(),
            account: None,
        },
        Caller::Anonymous => by_acl(None, needed, write, acl),
        Caller::Bearer(token) => by_token(&token, needed, write, acl),
        Caller::Unproven(Unproven::Missing(reason)) => Decision::Challenge {
            error: None,
            reason: reason.into(),
            account: None,
        },
        Caller::Unproven(Unproven::InvalidToken(reason)) => Decision::Challenge {
            error: Some("invalid_token"),
            reason,
            account: None,
        },
        Caller::Unproven(Unproven::Refused {
            account,
            error: error @ IdentityError::WrongCredential { .. },
        }) => Decision::Challenge {
            error: None,
            // The audit line gets the cause too (which API token, which
            // failed claim), not only what the client is told.
            reason: error.detail(),
            account: Some(account),
        },
        Caller::Unproven(Unproven::Refused { account, error }) => Decision::Unidentified {
            error,
            account: Some(account),
        },
    }
}

/// Basic and trusted-proxy modes: the ACL (and the identity's scope limit)
/// decide. An identified caller that is refused gets 403 (other credentials
/// are not on offer); an anonymous one a challenge, since signing in may
/// help.
fn by_acl(
    identity: Option<&Identity>,
    needed: &[ResourceScope],
    write: Option<WriteCheck>,
    acl: &Acl,
) -> Decision {
    let subject = identity.map_or(Subject::anonymous(), Identity::subject);
    let limit = identity.and_then(|identity| identity.scope_limit.as_deref());
    let permitted = |scope: &&ResourceScope| {
        acl.permits(&subject, scope) && limit.is_none_or(|limit| limit.permits(&subject, scope))
    };
    let account = identity.map(|identity| identity.account.clone());
    let refused = match needed.iter().find(|scope| !permitted(scope)) {
        Some(scope) => Some(format!(
            "access denied by the ACL: {}",
            scope.challenge_string()
        )),
        None => write.and_then(|check| refused_write(acl, &subject, needed, check.write)),
    };
    match refused {
        None => Decision::Allow {
            user: account,
            groups: identity
                .map(|identity| identity.groups.clone())
                .unwrap_or_default(),
        },
        Some(reason) if account.is_some() => Decision::Deny { reason, account },
        Some(reason) => Decision::Challenge {
            error: None,
            reason: format!("anonymous caller: {reason}"),
            account: None,
        },
    }
}

/// Why the ACL's tag rules refuse a manifest write that the rest of the ACL
/// (or a token) allows; `None` when they allow it too.
fn refused_write(
    acl: &Acl,
    subject: &Subject,
    needed: &[ResourceScope],
    write: &ManifestWrite,
) -> Option<String> {
    let target = needed
        .iter()
        .find(|scope| scope.resource_type == "repository" && scope.name == write.name)?;
    if acl.permits_write(subject, target, write.as_acl_write()) {
        return None;
    }
    let actions = target.actions.iter().cloned().collect::<Vec<_>>().join(",");
    Some(match &write.reference {
        Reference::Tag(tag) => format!(
            "tag {tag:?} of {} is protected: the ACL's tag rules do not allow {actions} of this tag",
            write.name
        ),
        Reference::Digest(_) => format!(
            "manifest writes by digest to {} are not allowed by the ACL's tag rules ({actions})",
            write.name
        ),
    })
}

/// Token mode: the token's `access` claim must cover every need; for a
/// manifest write, the ACL's tag rules must also allow it for the token's
/// subject (the token grants the repository, not the tag), and no token
/// could change that: 403.
fn by_token(
    token: &VerifiedToken,
    needed: &[ResourceScope],
    write: Option<WriteCheck>,
    acl: &Acl,
) -> Decision {
    if let Some(scope) = needed.iter().find(|scope| !token.covers(scope)) {
        return Decision::Challenge {
            error: Some("insufficient_scope"),
            reason: format!("token lacks {}", scope.challenge_string()),
            account: Some(token.subject().to_owned()),
        };
    }
    let user = Some(token.subject().to_owned()).filter(|sub| !sub.is_empty());
    let check = write.filter(|_| acl.has_reference_rules());
    let subject = Subject {
        account: user.as_deref(),
        groups: check.map_or(&[], |check| check.token_groups),
    };
    match check.and_then(|check| refused_write(acl, &subject, needed, check.write)) {
        None => Decision::Allow {
            user,
            // As fresh as the token: taken when it was issued.
            groups: token.groups().to_vec(),
        },
        Some(reason) => Decision::Deny {
            reason,
            account: user,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::RuleSpec;
    use crate::identity::Source;
    use crate::scope::parse_scope;
    use crate::token::{AccessClaims, AccessEntry};

    fn scope(text: &str) -> ResourceScope {
        parse_scope(text).unwrap()
    }

    fn acl(json: &str) -> Acl {
        let specs: Vec<RuleSpec> = serde_json::from_str(json).unwrap();
        Acl::compile(&specs).unwrap()
    }

    fn identity(account: &str, groups: &[&str]) -> Identity {
        Identity {
            account: account.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            source: Source::File,
            refresh_binding: None,
            scope_limit: None,
        }
    }

    fn entry(resource_type: &str, name: &str, actions: &[&str]) -> AccessEntry {
        AccessEntry {
            resource_type: resource_type.into(),
            class: None,
            name: name.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn claims(sub: &str, access: Vec<AccessEntry>) -> Arc<VerifiedToken> {
        Arc::new(VerifiedToken::from(AccessClaims {
            iss: "i".into(),
            sub: sub.into(),
            aud: "a".into(),
            exp: 2,
            nbf: 0,
            iat: 0,
            jti: "j".into(),
            access,
            // Signed-in subjects carry their groups (the private claim).
            groups: match sub {
                "" => vec![],
                _ => vec!["devs".into()],
            },
        }))
    }

    const RULES: &str = r#"[
        { "account": "*", "name": "${account}/**", "actions": ["*"] },
        { "group": "readers", "name": "team/**", "actions": ["pull"] },
        { "name": "public/**", "actions": ["pull"] }
    ]"#;

    #[test]
    fn a_token_allows_as_its_subject_or_asks_for_more_scope() {
        let token = claims("alice", vec![entry("repository", "a", &["pull"])]);
        let acl = Acl::default();
        match decide(
            Caller::Bearer(token.clone()),
            &[scope("repository:a:pull")],
            None,
            &acl,
        ) {
            Decision::Allow { user, groups } => {
                assert_eq!(user.as_deref(), Some("alice"));
                assert_eq!(groups, ["devs"], "groups from the token's claim");
            }
            other => panic!("{other:?}"),
        }
        let anonymous = claims("", vec![]);
        assert!(matches!(
            decide(Caller::Bearer(anonymous), &[], None, &acl),
            Decision::Allow { user: None, .. }
        ));
        match decide(
            Caller::Bearer(token.clone()),
            &[scope("repository:a:push")],
            None,
            &acl,
        ) {
            Decision::Challenge { error, account, .. } => {
                assert_eq!(error, Some("insufficient_scope"));
                assert_eq!(account.as_deref(), Some("alice"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_acl_decides_for_identified_callers_and_refusal_is_final() {
        let acl = acl(RULES);
        let alice = identity("alice", &[]);
        let needs = [scope("repository:alice/app:pull,push,delete")];
        assert!(matches!(
            decide(Caller::Identified(alice.clone()), &needs, None, &acl),
            Decision::Allow { user: Some(ref u), .. } if u == "alice"
        ));
        let reader = identity("rita", &["readers"]);
        assert!(matches!(
            decide(
                Caller::Identified(reader.clone()),
                &[scope("repository:team/x:pull")],
                None,
                &acl
            ),
            Decision::Allow { ref groups, .. } if groups == &["readers"]
        ));
        let denied = decide(
            Caller::Identified(reader.clone()),
            &[scope("repository:team/x:push")],
            None,
            &acl,
        );
        assert_eq!(denied.outcome(), "deny");
        assert_eq!(denied.account(), "rita");
        assert!(denied.reason().contains("repository:team/x:push"));
    }

    #[test]
    fn anonymous_callers_get_what_anyone_may_and_a_challenge_otherwise() {
        let acl = acl(RULES);
        let pull = [scope("repository:public/base:pull")];
        assert!(matches!(
            decide(Caller::Anonymous, &pull, None, &acl),
            Decision::Allow { user: None, ref groups } if groups.is_empty()
        ));
        let push = [scope("repository:public/base:push")];
        assert_eq!(
            decide(Caller::Anonymous, &push, None, &acl).outcome(),
            "challenge"
        );
        // The `/v2/` ping needs nothing, and still challenges.
        assert_eq!(
            decide(Caller::Anonymous, &[], None, &acl).outcome(),
            "challenge"
        );
    }

    #[test]
    fn a_scope_limit_narrows_what_the_acl_allows() {
        let acl = acl(RULES);
        let mut limited = identity("alice", &[]);
        limited.scope_limit = Some(Arc::new(self::acl(
            r#"[{ "name": "alice/app", "actions": ["pull"] }]"#,
        )));
        let pull = [scope("repository:alice/app:pull")];
        let push = [scope("repository:alice/app:push")];
        let elsewhere = [scope("repository:alice/other:pull")];
        assert_eq!(
            decide(Caller::Identified(limited.clone()), &pull, None, &acl).outcome(),
            "allow"
        );
        assert_eq!(
            decide(Caller::Identified(limited.clone()), &push, None, &acl).outcome(),
            "deny"
        );
        assert_eq!(
            decide(Caller::Identified(limited.clone()), &elsewhere, None, &acl).outcome(),
            "deny"
        );
    }

    #[test]
    fn unproven_credentials_challenge_and_seam_failures_pass_through() {
        let acl = acl(RULES);
        let needs = [scope("repository:public/base:pull")];
        let missing = decide(
            Caller::Unproven(Unproven::Missing("no bearer token")),
            &needs,
            None,
            &acl,
        );
        assert!(matches!(missing, Decision::Challenge { error: None, .. }));
        let invalid = decide(
            Caller::Unproven(Unproven::InvalidToken("token expired".into())),
            &needs,
            None,
            &acl,
        );
        assert!(matches!(
            invalid,
            Decision::Challenge {
                error: Some("invalid_token"),
                ..
            }
        ));
        let wrong = decide(
            Caller::Unproven(Unproven::Refused {
                account: "alice".into(),
                error: IdentityError::wrong("invalid username or password"),
            }),
            &needs,
            None,
            &acl,
        );
        assert_eq!(wrong.outcome(), "challenge");
        assert_eq!(wrong.account(), "alice");
        assert_eq!(wrong.reason(), "invalid username or password");
        let limited = decide(
            Caller::Unproven(Unproven::Refused {
                account: "alice".into(),
                error: IdentityError::Limited {
                    retry_after: std::time::Duration::from_secs(3),
                },
            }),
            &needs,
            None,
            &acl,
        );
        assert_eq!(limited.outcome(), "limited");
    }

    const TAG_RULES: &str = r#"[
        { "group": "release-managers", "name": "app/**", "tags": ["v*"], "digests": true, "actions": ["pull", "push", "delete"] },
        { "group": "ci", "name": "app/**", "tags": ["sha-*"], "digests": true, "actions": ["pull", "push"] },
        { "account": "*", "name": "app/**", "actions": ["pull"] }
    ]"#;

    fn write(reference: Reference) -> ManifestWrite {
        ManifestWrite {
            name: "app/web".into(),
            reference,
        }
    }

    /// Issue 12 part 3: tag rules decide manifest writes in Basic mode (the identity's
    /// groups) and token mode (the token's subject, the configured groups) alike.
    #[test]
    fn tag_rules_decide_manifest_writes_in_both_modes() {
        let acl = acl(TAG_RULES);
        let needs = [scope("repository:app/web:pull,push")];
        let release = write(Reference::Tag("v1".into()));
        let build = write(Reference::Tag("sha-1".into()));
        let by_digest = write(Reference::Digest(format!("sha256:{}", "a".repeat(64))));
        let ci = vec!["ci".to_owned()];
        let check = |write| {
            Some(WriteCheck {
                write,
                token_groups: &ci,
            })
        };
        let bot = || Caller::Identified(identity("bot", &["ci"]));
        let token = || {
            Caller::Bearer(claims(
                "bot",
                vec![entry("repository", "app/web", &["pull", "push"])],
            ))
        };
        for (mode, caller) in [("basic", &bot as &dyn Fn() -> Caller), ("token", &token)] {
            for allowed in [&build, &by_digest] {
                let decision = decide(caller(), &needs, check(allowed), &acl);
                assert_eq!(decision.outcome(), "allow", "{mode} {allowed:?}");
            }
            let refused = decide(caller(), &needs, check(&release), &acl);
            assert_eq!(refused.outcome(), "deny", "{mode}");
            assert_eq!(refused.account(), "bot", "{mode}");
            assert!(
                refused
                    .reason()
                    .starts_with("tag \"v1\" of app/web is protected"),
                "{mode}: {}",
                refused.reason()
            );
            // The same request without a manifest write (a blob upload) is allowed.
            assert_eq!(decide(caller(), &needs, None, &acl).outcome(), "allow");
        }
        // Token mode: the groups come from the configuration; without them the `ci` rule
        // does not apply and the build tag is refused as well.
        let no_groups = WriteCheck {
            write: &build,
            token_groups: &[],
        };
        assert_eq!(
            decide(token(), &needs, Some(no_groups), &acl).outcome(),
            "deny"
        );
        // A token that lacks the access still gets the challenge first.
        let pull_only = claims("bot", vec![entry("repository", "app/web", &["pull"])]);
        assert_eq!(
            decide(Caller::Bearer(pull_only), &needs, check(&build), &acl).outcome(),
            "challenge"
        );
        // Without tag rules the token alone decides, whatever the ACL says now.
        let plain = self::acl(r#"[{ "actions": [] }]"#);
        assert_eq!(
            decide(token(), &needs, check(&release), &plain).outcome(),
            "allow"
        );
        // Anonymous callers refused by a tag rule are challenged: signing in may help.
        let open = self::acl(
            r#"[{ "name": "app/**", "tags": ["dev"], "actions": ["pull", "push"] }, { "account": "*", "actions": ["pull", "push"] }]"#,
        );
        assert_eq!(
            decide(Caller::Anonymous, &needs, check(&release), &open).outcome(),
            "challenge"
        );
        assert_eq!(
            decide(
                Caller::Anonymous,
                &needs,
                check(&write(Reference::Tag("dev".into()))),
                &open
            )
            .outcome(),
            "allow"
        );
    }
}
