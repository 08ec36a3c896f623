//! Properties of ACL rules and name patterns, against a reference matcher and rule scan.

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use regauth::acl::{Acl, RuleSpec, Subject};
use regauth::scope::ResourceScope;

use super::*;

/// The pattern dialect matched the obvious way: memoised recursion over (pattern position,
/// name position), `${account}` spelled out byte for byte, no match for anonymous subjects
/// nor for accounts whose name is not one repository path component (a one-component
/// repository name: no `/`, and valid by the repository grammar).
pub(crate) fn reference_matches(pattern: &str, account: Option<&str>, name: &str) -> bool {
    #[derive(Clone, Copy)]
    enum Token {
        Byte(u8),
        Star,
        DoubleStar,
    }
    fn go(tokens: &[Token], name: &[u8], i: usize, j: usize, memo: &mut [Option<bool>]) -> bool {
        let slot = i * (name.len() + 1) + j;
        if let Some(known) = memo[slot] {
            return known;
        }
        let found = match tokens.get(i) {
            None => j == name.len(),
            Some(Token::Byte(byte)) => {
                name.get(j) == Some(byte) && go(tokens, name, i + 1, j + 1, memo)
            }
            Some(Token::Star) => {
                go(tokens, name, i + 1, j, memo)
                    || (name.get(j).is_some_and(|b| *b != b'/') && go(tokens, name, i, j + 1, memo))
            }
            Some(Token::DoubleStar) => {
                go(tokens, name, i + 1, j, memo)
                    || (j < name.len() && go(tokens, name, i, j + 1, memo))
            }
        };
        memo[slot] = Some(found);
        found
    }
    let mut tokens = Vec::new();
    let mut rest = pattern.as_bytes();
    while let Some(&first) = rest.first() {
        if let Some(after) = rest.strip_prefix(b"${account}") {
            let Some(account) = account.filter(|account| {
                !account.contains('/') && regauth::scope::validate_repository_name(account).is_ok()
            }) else {
                return false;
            };
            tokens.extend(account.bytes().map(Token::Byte));
            rest = after;
        } else if let Some(after) = rest.strip_prefix(b"**") {
            tokens.push(Token::DoubleStar);
            rest = after;
        } else {
            tokens.push(if first == b'*' {
                Token::Star
            } else {
                Token::Byte(first)
            });
            rest = &rest[1..];
        }
    }
    let mut memo = vec![None; (tokens.len() + 1) * (name.len() + 1)];
    go(&tokens, name.as_bytes(), 0, 0, &mut memo)
}

/// A pattern of literals (drawn from the `literal` regex), `*`, `**` and `${account}`, and a
/// name made by filling its wildcards in so that matches are common. The name need not
/// match (a dropped star or a fill with `/` can spoil it): the reference decides.
pub(crate) fn pattern_and_instance(
    literal: &'static str,
    pieces: std::ops::Range<usize>,
    account: Option<String>,
) -> impl Strategy<Value = (String, String)> {
    let piece = prop_oneof![3 => literal, 2 => Just("*".to_owned()), 2 => Just("**".to_owned()),
        1 => Just("${account}".to_owned())];
    prop::collection::vec((piece, "[ab/]{0,3}"), pieces).prop_map(move |pieces| {
        let (mut pattern, mut instance) = (String::new(), String::new());
        for (piece, fill) in pieces {
            // `***` is not a pattern; a star right after a star is dropped.
            if piece.starts_with('*') && pattern.ends_with('*') {
                continue;
            }
            pattern.push_str(&piece);
            match piece.as_str() {
                "*" => instance.push_str(&fill.replace('/', "")),
                "**" => instance.push_str(&fill),
                "${account}" => instance.push_str(account.as_deref().unwrap_or("")),
                literal => instance.push_str(literal),
            }
        }
        (pattern, instance)
    })
}

pub(crate) fn rule(pattern: &str, actions: &[&str]) -> RuleSpec {
    RuleSpec {
        account: None,
        group: None,
        resource_type: "repository".to_owned(),
        name: pattern.to_owned(),
        actions: actions.iter().map(|action| (*action).to_owned()).collect(),
        tags: None,
        digests: None,
        comment: None,
    }
}

/// Whether a one-rule ACL with `pattern` lets `account` at `name`.
pub(crate) fn pattern_matches(pattern: &str, account: Option<&str>, name: &str) -> bool {
    let acl = Acl::compile(&[rule(pattern, &["pull"])]).expect("the pattern compiles");
    let subject = Subject {
        account,
        groups: &[],
    };
    !acl.allowed(&subject, "repository", name).is_empty()
}

/// First matching rule decides; no match means nothing (the documented semantics).
pub(crate) fn reference_allowed(
    rules: &[RuleSpec],
    subject: &Subject,
    kind: &str,
    name: &str,
) -> BTreeSet<String> {
    let account = subject.account.filter(|account| !account.is_empty());
    let groups: &[String] = if account.is_some() {
        subject.groups
    } else {
        &[]
    };
    let deciding = rules.iter().find(|rule| {
        let account_ok = match rule.account.as_deref() {
            None => true,
            Some("") => account.is_none(),
            Some("*") => account.is_some(),
            Some(exact) => account == Some(exact),
        };
        let group_ok = rule
            .group
            .as_ref()
            .is_none_or(|group| groups.contains(group));
        account_ok
            && group_ok
            && rule.resource_type == kind
            && reference_matches(&rule.name, account, name)
    });
    match deciding {
        Some(rule) if rule.actions.iter().any(|action| action == "*") => {
            BTreeSet::from(["*".to_owned()])
        }
        Some(rule) => rule.actions.iter().cloned().collect(),
        None => BTreeSet::new(),
    }
}

pub(crate) fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    let account = prop::option::weighted(0.4, select(&["", "*", "alice", "bob"][..]));
    let group = prop::option::weighted(0.2, Just("staff".to_owned()));
    let kind = prop_oneof![3 => Just("repository"), 1 => Just("registry")];
    let pattern = prop_oneof![
        1 => Just("**".to_owned()),
        1 => Just("${account}/**".to_owned()),
        1 => "[ab]/\\*\\*?",
        3 => pattern_and_instance("[ab/]{1,2}", 1..4, None).prop_map(|(pattern, _)| pattern),
    ];
    let actions = subsequence(&["*", "delete", "pull", "push"][..], 0..=4);
    (account, group, kind, pattern, actions).prop_map(|(account, group, kind, name, actions)| {
        // `${account}` in an anonymous-only rule is a compile error; open that rule to anyone.
        let account =
            account.filter(|account| !(account.is_empty() && name.contains("${account}")));
        RuleSpec {
            account: account.map(str::to_owned),
            group,
            resource_type: kind.to_owned(),
            name,
            actions: actions.into_iter().map(str::to_owned).collect(),
            tags: None,
            digests: None,
            comment: None,
        }
    })
}

pub(crate) fn requested_scopes() -> impl Strategy<Value = Vec<ResourceScope>> {
    let kind = prop_oneof![3 => Just("repository"), 1 => Just("registry")];
    let class = prop::option::weighted(0.2, Just("plugin".to_owned()));
    let name = prop_oneof![
        "[ab/]{0,4}",
        "[ab]{1,2}(/[ab]{1,2})?",
        "(alice|bob|\\*)/[ab]{1,2}"
    ];
    prop::collection::vec((kind, class, name, action_set(1)), 0..6).prop_map(|scopes| {
        let scopes: Vec<ResourceScope> = scopes
            .into_iter()
            .map(|(kind, class, name, actions)| ResourceScope {
                resource_type: kind.to_owned(),
                class,
                name,
                actions,
            })
            .collect();
        united(&scopes) // one scope per resource, as parse_scopes hands them over
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn patterns_agree_with_the_reference_matcher(
        (account, (pattern, instance), other) in prop::option::of("[ab*/]{0,3}")
            .prop_flat_map(|account| (
                Just(account.clone()),
                pattern_and_instance("[ab/]{1,3}", 1..7, account),
                "[ab*/]{0,10}",
            )),
    ) {
        for name in [&instance, &other] {
            let expected = reference_matches(&pattern, account.as_deref(), name);
            prop_assert_eq!(pattern_matches(&pattern, account.as_deref(), name), expected,
                "pattern {:?}, account {:?}, name {:?}", pattern, account, name);
        }
    }

    #[test]
    fn long_names_and_many_stars_agree_with_the_reference_matcher(
        (pattern, instance) in pattern_and_instance("a{1,2}|/", 8..24, Some("a".to_owned())),
        long in "a{60,200}(b|/a)?",
    ) {
        for name in [&format!("{instance}{long}"), &long, &format!("{long}{instance}")] {
            let expected = reference_matches(&pattern, Some("a"), name);
            prop_assert_eq!(pattern_matches(&pattern, Some("a"), name), expected,
                "pattern {:?}, name {:?}", pattern, name);
        }
    }

    #[test]
    fn a_pattern_without_wildcards_matches_only_its_text(
        (pattern, name) in "[a-zA-Z0-9/._:@+=,-]{1,12}".prop_flat_map(|pattern| (
            Just(pattern.clone()),
            prop_oneof![
                Just(pattern.clone()),
                "[a-zA-Z0-9/._:@+=,-]{0,12}",
                "[a/]{0,2}".prop_map(move |extra| format!("{pattern}{extra}")),
            ],
        )),
        account in prop::option::of("[a-z*]{0,3}"),
    ) {
        prop_assert_eq!(pattern_matches(&pattern, account.as_deref(), &name), name == pattern);
    }

    /// Issue 8 item 5: an account name with globs, slashes or dots is not one path
    /// component, so `${account}` never stands for it, whatever the name asked for.
    #[test]
    fn accounts_that_are_not_one_component_never_expand(
        account in "[a*/.]{0,3}[*/][a*/.]{0,2}",
        pattern in select(&["${account}", "${account}/**", "${account}/*", "team-${account}"][..]),
        suffix in "[a*/]{0,4}",
        other in "[ab*/.-]{0,8}",
    ) {
        let literal = pattern.replace("/**", "/").replace("/*", "/").replace("${account}", &account);
        for name in [format!("{literal}{suffix}"), other.clone()] {
            prop_assert!(!pattern_matches(pattern, Some(&account), &name),
                "pattern {:?}, account {:?}, name {:?}", pattern, account, name);
        }
    }

    #[test]
    fn grant_is_the_request_cut_down_to_what_the_first_matching_rule_allows(
        rules in prop::collection::vec(rule_spec(), 0..6),
        account in select(&[None, Some(""), Some("alice"), Some("bob"), Some("*")][..]),
        in_staff in any::<bool>(),
        requested in requested_scopes(),
    ) {
        let acl = Acl::compile(&rules).expect("generated rules compile");
        let groups = if in_staff { vec!["staff".to_owned()] } else { Vec::new() };
        let subject = Subject { account, groups: &groups };
        let granted = acl.grant(&subject, &requested);

        let mut expected = Vec::new();
        for scope in &requested {
            let allowed = acl.allowed(&subject, &scope.resource_type, &scope.name);
            prop_assert_eq!(&allowed, &reference_allowed(&rules, &subject, &scope.resource_type, &scope.name));
            let wants_all = scope.actions.contains("*");
            let actions: BTreeSet<String> = match (allowed.contains("*"), wants_all) {
                (true, true) => BTreeSet::from(["*".to_owned()]),
                (true, false) => scope.actions.clone(),
                (false, true) => allowed.clone(),
                (false, false) => scope.actions.intersection(&allowed).cloned().collect(),
            };
            let same_resource = |given: &&ResourceScope| {
                (&given.resource_type, &given.class, &given.name) == (&scope.resource_type, &scope.class, &scope.name)
            };
            if let Some(given) = granted.iter().find(same_resource) {
                // Nothing unrequested unless `*` was requested; nothing beyond what is allowed.
                prop_assert!(wants_all || given.actions.is_subset(&scope.actions), "{:?}", given);
                prop_assert!(allowed.contains("*") || given.actions.is_subset(&allowed), "{:?}", given);
            }
            if !actions.is_empty() {
                expected.push(ResourceScope { actions, ..scope.clone() });
            }
        }
        prop_assert_eq!(granted, expected);
    }
}
