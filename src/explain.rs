//! `regauth explain`: for each resource a caller asks about, the ACL rules in order, why
//! each was skipped, which one decided, and the resulting grant. First-match ACLs confuse
//! people (docker_auth #198, #213, #326, #340); this shows the evaluation instead of
//! leaving it to be guessed.
//!
//! Two views: scopes (what `/token` would grant) and `--request 'METHOD URI'` (what `/auth`
//! decides for one registry request, tag rules included). The text is built by pure
//! functions; [`run`] only loads the config and prints.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use crate::acl::{Acl, ManifestWrite, RuleVerdict, Subject, Verdict};
use crate::route;
use crate::scope::{parse_scopes, ResourceScope};

/// What to explain.
pub struct Question<'a> {
    /// The account asking; `None` for anonymous.
    pub account: Option<&'a str>,
    /// Its groups. Empty: the configured user's groups, if it is an inline user.
    pub groups: &'a [String],
    /// Scopes as a client would request them at `/token`.
    pub scopes: &'a [String],
    /// A registry request, `METHOD URI`, as `/auth` would see it.
    pub request: Option<&'a str>,
}

/// Loads the config at `config_path` (not the files it names) and prints the explanation.
pub fn run(config_path: &Path, question: &Question) -> anyhow::Result<()> {
    let config = crate::snapshot::read_config(config_path)?;
    let acl = Acl::compile(&config.acl).context("the ACL does not compile")?;
    let configured_groups = question
        .account
        .and_then(|account| config.users.get(account))
        .map(|user| user.groups.clone())
        .unwrap_or_default();
    let groups = if question.groups.is_empty() {
        configured_groups.as_slice()
    } else {
        question.groups
    };
    let subject = Subject {
        account: question.account,
        groups,
    };
    let mut text = describe_subject(&subject);
    if !question.scopes.is_empty() {
        let scopes = parse_scopes(question.scopes.iter().map(String::as_str))?;
        text.push_str(&explain_scopes(&acl, &subject, &scopes));
    }
    if let Some(request) = question.request {
        let (method, uri) = request
            .split_once(' ')
            .context("--request must be 'METHOD URI', e.g. 'PUT /v2/app/manifests/v1'")?;
        text.push_str(&explain_request(&acl, &subject, method, uri.trim()));
    }
    if question.scopes.is_empty() && question.request.is_none() {
        anyhow::bail!("name at least one SCOPE (e.g. repository:app/web:pull,push) or --request");
    }
    print!("{text}");
    Ok(())
}

fn describe_subject(subject: &Subject) -> String {
    match subject.account {
        Some(account) if !account.is_empty() => {
            format!("account {account:?}, groups {:?}\n", subject.groups)
        }
        _ => "anonymous caller (no account, no groups)\n".to_owned(),
    }
}

/// The `/token` view: for each requested resource, the rules tried and the grant.
pub fn explain_scopes(acl: &Acl, subject: &Subject, scopes: &[ResourceScope]) -> String {
    let mut text = String::new();
    for scope in scopes {
        let _ = writeln!(text, "\n{scope} (token request)");
        let verdicts = acl.explain(subject, &scope.resource_type, &scope.name, None);
        write_verdicts(&mut text, &verdicts);
        let granted = acl.grant(subject, std::slice::from_ref(scope));
        let _ = match granted.first() {
            Some(grant) => writeln!(text, "  grant: {grant}"),
            None => writeln!(text, "  grant: nothing"),
        };
    }
    if acl.has_reference_rules() {
        text.push_str(
            "\nnote: rules with \"tags\"/\"digests\" are ignored here (a token cannot carry a tag); \
             /auth checks them on each manifest write: use --request to see that\n",
        );
    }
    text
}

/// The `/auth` view: the access a request needs, the rules tried for each resource (with
/// the tag or digest of a manifest write), and whether the ACL allows it.
pub fn explain_request(acl: &Acl, subject: &Subject, method: &str, uri: &str) -> String {
    let mut text = format!("\n{method} {uri} (/auth)\n");
    let required = match route::classify(method, uri) {
        Ok(required) => required,
        Err(error) => {
            let _ = writeln!(text, "  refused before any rule (403): {error}");
            return text;
        }
    };
    if required.access.is_empty() {
        text.push_str("  needs any valid credential; no rule is consulted\n");
        return text;
    }
    let mut missing = Vec::new();
    let mut refused_write = None;
    for scope in &required.access {
        let write = required
            .manifest_write
            .as_ref()
            .filter(|write| scope.resource_type == "repository" && write.name == scope.name);
        let what = match write.map(|write| write.as_acl_write()) {
            Some(ManifestWrite::Tag(tag)) => format!(" (manifest write by tag {tag:?})"),
            Some(ManifestWrite::Digest) => " (manifest write by digest)".to_owned(),
            None => String::new(),
        };
        let _ = writeln!(text, "  needs {}{what}", scope.challenge_string());
        let verdicts = acl.explain(
            subject,
            &scope.resource_type,
            &scope.name,
            write.map(|write| write.as_acl_write()),
        );
        write_verdicts(&mut text, &verdicts);
        let allowed = match verdicts.last().map(|verdict| &verdict.outcome) {
            Some(Verdict::Decides(actions)) => actions.clone(),
            _ => Default::default(),
        };
        if !(allowed.contains("*") || scope.actions.iter().all(|a| allowed.contains(a))) {
            missing.push(scope.challenge_string());
            let write = what.trim().trim_start_matches('(').trim_end_matches(')');
            refused_write = refused_write.or((!write.is_empty()).then(|| write.to_owned()));
        }
    }
    let lacks = match refused_write {
        Some(write) => format!("lacks {} for this {write}", missing.join(" ")),
        None => format!("lacks {}", missing.join(" ")),
    };
    let _ = if missing.is_empty() {
        writeln!(text, "  answer: allowed")
    } else if subject.account.is_some_and(|account| !account.is_empty()) {
        writeln!(text, "  answer: refused (403), {lacks}")
    } else {
        writeln!(
            text,
            "  answer: refused (401 challenge: signing in may help), {lacks}"
        )
    };
    text
}

fn write_verdicts(text: &mut String, verdicts: &[RuleVerdict]) {
    if verdicts.is_empty() {
        text.push_str("    no rules\n");
    }
    for verdict in verdicts {
        let spec = serde_json::to_string(&verdict.spec).unwrap_or_default();
        let _ = match &verdict.outcome {
            Verdict::Skipped(why) => writeln!(
                text,
                "    rule {} {spec}\n      skipped: {why}",
                verdict.rule
            ),
            Verdict::Decides(actions) if actions.is_empty() => {
                writeln!(
                    text,
                    "    rule {} {spec}\n      matches: explicit deny",
                    verdict.rule
                )
            }
            Verdict::Decides(actions) => writeln!(
                text,
                "    rule {} {spec}\n      matches: allows {}",
                verdict.rule,
                actions.iter().cloned().collect::<Vec<_>>().join(",")
            ),
        };
    }
    if verdicts
        .last()
        .is_none_or(|verdict| matches!(verdict.outcome, Verdict::Skipped(_)))
    {
        text.push_str("    no rule matched: nothing is allowed\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::RuleSpec;

    fn acl() -> Acl {
        let specs: Vec<RuleSpec> = serde_json::from_str(
            r#"[
                { "group": "release-managers", "name": "app/**", "tags": ["v*", "latest"], "digests": true, "actions": ["pull", "push", "delete"] },
                { "group": "ci", "name": "app/**", "tags": ["sha-*"], "digests": true, "actions": ["pull", "push"] },
                { "account": "*", "name": "${account}/**", "actions": ["*"] },
                { "account": "*", "name": "app/**", "actions": ["pull"] }
            ]"#,
        )
        .unwrap();
        Acl::compile(&specs).unwrap()
    }

    #[test]
    fn scopes_show_every_rule_tried_and_the_grant() {
        let ci = vec!["ci".to_owned()];
        let subject = Subject {
            account: Some("bot"),
            groups: &ci,
        };
        let scopes = parse_scopes(["repository:app/web:pull,push,delete"]).unwrap();
        let text = explain_scopes(&acl(), &subject, &scopes);
        assert!(text.contains("rule 1"), "{text}");
        assert!(
            text.contains("skipped: the rule needs group \"release-managers\""),
            "{text}"
        );
        assert!(
            text.contains("rule 2") && text.contains("matches: allows pull,push"),
            "{text}"
        );
        assert!(
            !text.contains("rule 3"),
            "evaluation stops at the match: {text}"
        );
        assert!(
            text.contains("grant: repository:app/web:pull,push"),
            "{text}"
        );
        assert!(text.contains("note: rules with \"tags\""), "{text}");
    }

    #[test]
    fn requests_show_tag_rules_and_the_answer() {
        let ci = vec!["ci".to_owned()];
        let subject = Subject {
            account: Some("bot"),
            groups: &ci,
        };
        let text = explain_request(&acl(), &subject, "PUT", "/v2/app/web/manifests/v1.0");
        assert!(text.contains("manifest write by tag \"v1.0\""), "{text}");
        assert!(
            text.contains("tag \"v1.0\" matches none of the rule's tags [\"sha-*\"]"),
            "{text}"
        );
        assert!(
            text.contains("does not match \"${account}/**\" (with ${account} = \"bot\")"),
            "{text}"
        );
        assert!(
            text.contains(
                "answer: refused (403), lacks repository:app/web:pull,push \
                 for this manifest write by tag \"v1.0\""
            ),
            "{text}"
        );
        let text = explain_request(&acl(), &subject, "PUT", "/v2/app/web/manifests/sha-1");
        assert!(text.contains("answer: allowed"), "{text}");
        let text = explain_request(&acl(), &subject, "POST", "/v2/app/web/blobs/uploads/?x=1;y");
        assert!(text.contains("refused before any rule (403)"), "{text}");
        let text = explain_request(
            &acl(),
            &Subject::anonymous(),
            "GET",
            "/v2/app/web/tags/list",
        );
        assert!(text.contains("401 challenge"), "{text}");
    }

    #[test]
    fn unexpandable_accounts_are_named() {
        let subject = Subject {
            account: Some("alice/team"),
            groups: &[],
        };
        let text = explain_request(&acl(), &subject, "GET", "/v2/alice/team/x/tags/list");
        assert!(text.contains("cannot stand for"), "{text}");
        assert!(text.contains("reach into another namespace"), "{text}");
    }
}
