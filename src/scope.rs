//! The Distribution resource-scope grammar (`type[(class)]:name:action,...`).
//!
//! Owns parsing the `scope` values clients send to the token endpoint, merging repeated and
//! space-joined scopes into one entry per resource, and the repository-name grammar
//! (`reference.NameRegexp` of Distribution 2.8) that `route` reuses for request paths.
//! Everything here is pure: values in, values out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The registry's limit on a repository name (`NameTotalLengthMax`), also applied to the
/// names of other resource types so that no scope carries an unbounded name.
pub const NAME_MAX_LEN: usize = 255;

/// Longest piece of client input echoed back in an error message; keeps error bodies and
/// log lines bounded when a client sends a huge value.
const ECHO_MAX_CHARS: usize = 256;

/// One resource scope, e.g. `repository(plugin):host:5000/a/b:pull,push`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceScope {
    /// Resource type such as `repository` or `registry`.
    pub resource_type: String,
    /// Resource class, e.g. `plugin` from `repository(plugin)`; `None` when absent.
    pub class: Option<String>,
    /// Resource name, e.g. `host:5000/team/app` or `catalog`.
    pub name: String,
    /// Requested or granted actions such as `pull`, `push`, `delete` or `*`.
    pub actions: BTreeSet<String>,
}

impl ResourceScope {
    /// A `repository` scope without class, the shape every registry endpoint needs.
    pub fn repository(name: &str, actions: &[&str]) -> ResourceScope {
        ResourceScope {
            resource_type: "repository".to_owned(),
            class: None,
            name: name.to_owned(),
            actions: actions.iter().map(|action| (*action).to_owned()).collect(),
        }
    }

    /// The scope as the registry writes it in `WWW-Authenticate`: `type:name:a,b`.
    ///
    /// The registry never puts the class in a challenge, so neither do we.
    pub fn challenge_string(&self) -> String {
        ChallengeScopes(std::slice::from_ref(self)).to_string()
    }
}

impl fmt::Display for ResourceScope {
    /// Writes `type[(class)]:name:a,b` with the actions sorted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.resource_type)?;
        if let Some(class) = &self.class {
            write!(f, "({class})")?;
        }
        write!(f, ":{}:", self.name)?;
        write_actions(f, &self.actions)
    }
}

/// Scopes as a registry's challenge lists them: `type:name:a,b`, separated
/// by spaces. Written when shown, not before: `/auth` needs the text only
/// for a challenge or an audit line, never for the requests it allows.
pub struct ChallengeScopes<'a>(pub &'a [ResourceScope]);

impl fmt::Display for ChallengeScopes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, scope) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}:{}:", scope.resource_type, scope.name)?;
            write_actions(f, &scope.actions)?;
        }
        Ok(())
    }
}

/// The actions comma-separated, in their (sorted) set order.
fn write_actions(f: &mut fmt::Formatter<'_>, actions: &BTreeSet<String>) -> fmt::Result {
    for (index, action) in actions.iter().enumerate() {
        if index > 0 {
            f.write_str(",")?;
        }
        f.write_str(action)?;
    }
    Ok(())
}

/// Why a scope or a repository name was rejected. Messages are shown to clients and operators.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// The text lacks the two `:` separators of `type:name:actions`.
    #[error("scope {scope:?} is not of the form type:name:actions")]
    Malformed {
        /// The offending scope text (possibly shortened).
        scope: String,
    },
    /// The resource type (or its class) is not lower-case letters and digits.
    #[error(
        "scope {scope:?}: resource type {resource_type:?} must be lower-case letters and digits, \
         optionally followed by a class in parentheses such as repository(plugin)"
    )]
    InvalidType {
        /// The offending scope text (possibly shortened).
        scope: String,
        /// The text before the first `:`.
        resource_type: String,
    },
    /// Nothing but commas after the last `:`.
    #[error("scope {scope:?} names no actions; expected e.g. repository:name:pull")]
    NoActions {
        /// The offending scope text (possibly shortened).
        scope: String,
    },
    /// An action that is neither lower-case letters nor `*`.
    #[error("scope {scope:?}: action {action:?} must be lower-case letters or \"*\"")]
    InvalidAction {
        /// The offending scope text (possibly shortened).
        scope: String,
        /// The rejected action.
        action: String,
    },
    /// The resource name inside a scope breaks the name rules of its type.
    #[error("scope {scope:?}: resource name {name:?} is invalid: {problem}")]
    InvalidName {
        /// The offending scope text (possibly shortened).
        scope: String,
        /// The rejected name (possibly shortened).
        name: String,
        /// What is wrong with it.
        problem: NameProblem,
    },
    /// A bare repository name (not inside a scope) breaks the reference grammar.
    #[error("repository name {name:?} is invalid: {problem}")]
    InvalidRepositoryName {
        /// The rejected name (possibly shortened).
        name: String,
        /// What is wrong with it.
        problem: NameProblem,
    },
}

/// What is wrong with a resource name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameProblem {
    /// The name is the empty string.
    #[error("it is empty")]
    Empty,
    /// The name exceeds [`NAME_MAX_LEN`].
    #[error("it is {length} characters long; the limit is 255")]
    TooLong {
        /// Length of the name in bytes.
        length: usize,
    },
    /// A non-repository name holds spaces, control characters or non-ASCII text.
    #[error("it must be printable ASCII without spaces")]
    NotPrintable,
    /// Two `/` in a row, or a leading or trailing `/`.
    #[error("it has an empty path component (a leading, trailing or doubled '/')")]
    EmptyComponent,
    /// A path component breaks `[a-z0-9]+` joined by `.`, `_`, `__` or dashes.
    #[error(
        "path component {component:?} must be lower-case letters and digits, \
         separated only by '.', '_', '__' or dashes"
    )]
    BadComponent {
        /// The rejected component.
        component: String,
    },
    /// The first of several components is neither a path component nor a `host[:port]`.
    #[error("{component:?} is neither a lower-case path component nor a registry host[:port]")]
    BadDomain {
        /// The rejected first component.
        component: String,
    },
}

/// Shortens client input for an error message, on a character boundary.
pub(crate) fn excerpt(text: &str) -> String {
    match text.char_indices().nth(ECHO_MAX_CHARS) {
        Some((cut, _)) => format!("{}...", text.get(..cut).unwrap_or_default()),
        None => text.to_owned(),
    }
}

/// Parses one resource scope such as `repository:localhost:5000/a/b:pull,push`.
///
/// The type is the text before the first `:` and the actions the text after the last `:`,
/// so names may carry a `host:port/` prefix (a naive three-way split would break those).
pub fn parse_scope(text: &str) -> Result<ResourceScope, ScopeError> {
    let malformed = || ScopeError::Malformed {
        scope: excerpt(text),
    };
    let (type_text, rest) = text.split_once(':').ok_or_else(malformed)?;
    let (name, actions_text) = rest.rsplit_once(':').ok_or_else(malformed)?;

    let (resource_type, class) =
        split_type_and_class(type_text).ok_or_else(|| ScopeError::InvalidType {
            scope: excerpt(text),
            resource_type: excerpt(type_text),
        })?;

    let mut actions = BTreeSet::new();
    for action in actions_text.split(',').filter(|action| !action.is_empty()) {
        if !is_valid_action(action) {
            return Err(ScopeError::InvalidAction {
                scope: excerpt(text),
                action: excerpt(action),
            });
        }
        actions.insert(action.to_owned());
    }
    if actions.is_empty() {
        return Err(ScopeError::NoActions {
            scope: excerpt(text),
        });
    }

    let name_check = if resource_type == "repository" {
        check_repository_name(name)
    } else {
        check_plain_name(name)
    };
    name_check.map_err(|problem| ScopeError::InvalidName {
        scope: excerpt(text),
        name: excerpt(name),
        problem,
    })?;

    Ok(ResourceScope {
        resource_type: resource_type.to_owned(),
        class: class.map(str::to_owned),
        name: name.to_owned(),
        actions,
    })
}

/// Parses every `scope` parameter or form field a request carried.
///
/// Each value may hold several scopes separated by ASCII spaces (the challenge format, and
/// how docker and containerd send them). Empty values and empty pieces are skipped. Actions
/// of the same (type, class, name) are united, because clients repeat resources with
/// reordered actions (`pull,push` next to `push,pull`). The result is sorted.
pub fn parse_scopes<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<ResourceScope>, ScopeError> {
    let mut merged: BTreeMap<(String, Option<String>, String), BTreeSet<String>> = BTreeMap::new();
    for value in values {
        for piece in value.split(' ').filter(|piece| !piece.is_empty()) {
            let scope = parse_scope(piece)?;
            merged
                .entry((scope.resource_type, scope.class, scope.name))
                .or_default()
                .extend(scope.actions);
        }
    }
    Ok(merged
        .into_iter()
        .map(|((resource_type, class, name), actions)| ResourceScope {
            resource_type,
            class,
            name,
            actions,
        })
        .collect())
}

/// Checks a repository name against Distribution's `reference.NameRegexp` and the 255
/// character limit.
///
/// The grammar: an optional `host[:port]/` prefix, then `/`-separated path components of
/// `[a-z0-9]+` joined by `.`, `_`, `__` or dashes. As in the regexp, the first of several
/// components is accepted if it fits either grammar, so `Registry.Example-1.com:5000/app`
/// and `localhost/app` are valid, while a single upper-case component is not.
pub fn validate_repository_name(name: &str) -> Result<(), ScopeError> {
    check_repository_name(name).map_err(|problem| ScopeError::InvalidRepositoryName {
        name: excerpt(name),
        problem,
    })
}

fn check_repository_name(name: &str) -> Result<(), NameProblem> {
    if name.is_empty() {
        return Err(NameProblem::Empty);
    }
    // Length first, so later messages never echo more than the limit.
    if name.len() > NAME_MAX_LEN {
        return Err(NameProblem::TooLong { length: name.len() });
    }
    let mut components = name.split('/');
    let first = components.next().unwrap_or_default();
    let rest: Vec<&str> = components.collect();
    if first.is_empty() || rest.iter().any(|component| component.is_empty()) {
        return Err(NameProblem::EmptyComponent);
    }
    if !is_path_component(first) {
        // The regexp lets a leading component match the domain grammar only when a path
        // component follows it.
        if rest.is_empty() {
            return Err(NameProblem::BadComponent {
                component: first.to_owned(),
            });
        }
        if !is_domain(first) {
            return Err(NameProblem::BadDomain {
                component: first.to_owned(),
            });
        }
    }
    match rest
        .into_iter()
        .find(|component| !is_path_component(component))
    {
        Some(component) => Err(NameProblem::BadComponent {
            component: component.to_owned(),
        }),
        None => Ok(()),
    }
}

/// Names of non-repository resources (`registry:catalog`, ...) have no published grammar;
/// keep them bounded and free of anything that could confuse logs or the space-separated
/// scope format.
fn check_plain_name(name: &str) -> Result<(), NameProblem> {
    if name.is_empty() {
        return Err(NameProblem::Empty);
    }
    if name.len() > NAME_MAX_LEN {
        return Err(NameProblem::TooLong { length: name.len() });
    }
    if !name.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(NameProblem::NotPrintable);
    }
    Ok(())
}

/// `[a-z0-9]+` or the same followed by `(` `[a-z0-9]+` `)`.
fn split_type_and_class(text: &str) -> Option<(&str, Option<&str>)> {
    let (resource_type, class) = match text.split_once('(') {
        Some((resource_type, tail)) => (resource_type, Some(tail.strip_suffix(')')?)),
        None => (text, None),
    };
    let valid = is_lower_alphanumeric(resource_type) && class.is_none_or(is_lower_alphanumeric);
    valid.then_some((resource_type, class))
}

/// Non-empty `[a-z0-9]+`.
pub(crate) fn is_lower_alphanumeric(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_lower_alphanumeric_byte)
}

fn is_lower_alphanumeric_byte(byte: u8) -> bool {
    is_lower_alphanumeric_char(char::from(byte))
}

fn is_lower_alphanumeric_char(character: char) -> bool {
    character.is_ascii_lowercase() || character.is_ascii_digit()
}

fn is_valid_action(action: &str) -> bool {
    action == "*" || (!action.is_empty() && action.bytes().all(|byte| byte.is_ascii_lowercase()))
}

/// `[a-z0-9]+` runs joined by separators `.`, `_`, `__` or one or more `-`.
pub(crate) fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let starts_and_ends_alphanumeric = matches!(
        (bytes.first(), bytes.last()),
        (Some(&first), Some(&last))
            if is_lower_alphanumeric_byte(first) && is_lower_alphanumeric_byte(last)
    );
    starts_and_ends_alphanumeric
        && component
            .split(is_lower_alphanumeric_char)
            .filter(|separator| !separator.is_empty())
            .all(is_separator)
}

fn is_separator(separator: &str) -> bool {
    matches!(separator, "." | "_" | "__") || separator.bytes().all(|byte| byte == b'-')
}

/// `label(.label)*(:digits)?` with labels `[a-zA-Z0-9]` or `[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`.
fn is_domain(text: &str) -> bool {
    let (host, port) = match text.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    };
    let port_ok =
        port.is_none_or(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    port_ok && host.split('.').all(is_domain_label)
}

fn is_domain_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    let edges_ok = matches!(
        (bytes.first(), bytes.last()),
        (Some(first), Some(last)) if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric()
    );
    edges_ok
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actions(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|action| (*action).to_owned()).collect()
    }

    #[test]
    fn parses_plain_repository_scope() {
        let scope = parse_scope("repository:samalba/my-app:pull,push").unwrap();
        assert_eq!(
            scope,
            ResourceScope::repository("samalba/my-app", &["pull", "push"])
        );
    }

    #[test]
    fn name_may_carry_host_and_port() {
        let scope = parse_scope("repository:localhost:5000/a/b:pull,push").unwrap();
        assert_eq!(scope.name, "localhost:5000/a/b");
        assert_eq!(scope.actions, actions(&["pull", "push"]));
    }

    #[test]
    fn parses_class() {
        let scope = parse_scope("repository(plugin):x:pull").unwrap();
        assert_eq!(scope.resource_type, "repository");
        assert_eq!(scope.class.as_deref(), Some("plugin"));
        assert_eq!(scope.name, "x");
        assert_eq!(scope.to_string(), "repository(plugin):x:pull");
        assert_eq!(scope.challenge_string(), "repository:x:pull");
    }

    #[test]
    fn parses_catalog_wildcard() {
        let scope = parse_scope("registry:catalog:*").unwrap();
        assert_eq!(scope.resource_type, "registry");
        assert_eq!(scope.name, "catalog");
        assert_eq!(scope.actions, actions(&["*"]));
        assert_eq!(scope.to_string(), "registry:catalog:*");
    }

    #[test]
    fn empty_action_items_are_dropped_and_display_sorts() {
        let scope = parse_scope("repository:a:push,,pull,").unwrap();
        assert_eq!(scope.to_string(), "repository:a:pull,push");
        assert_eq!(scope.challenge_string(), "repository:a:pull,push");
    }

    #[test]
    fn challenge_scopes_are_space_separated_and_leave_the_class_out() {
        let plugin = parse_scope("repository(plugin):b:push,pull").unwrap();
        let scopes = [ResourceScope::repository("a", &["pull"]), plugin];
        assert_eq!(
            ChallengeScopes(&scopes).to_string(),
            "repository:a:pull repository:b:pull,push"
        );
        assert_eq!(ChallengeScopes(&[]).to_string(), "");
    }

    #[test]
    fn merges_actions_of_the_same_resource() {
        let scopes = parse_scopes(["repository:a:push,pull", "repository:a:pull"]).unwrap();
        assert_eq!(
            scopes,
            vec![ResourceScope::repository("a", &["pull", "push"])]
        );
    }

    #[test]
    fn merges_duplicates_across_repeated_and_space_joined_values() {
        let scopes = parse_scopes([
            "repository:b:pull repository:a:pull,push",
            "",
            "repository:a:push,pull  registry:catalog:*",
            "repository:b:pull",
            "repository(plugin):a:pull",
        ])
        .unwrap();
        let rendered: Vec<String> = scopes.iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            [
                "registry:catalog:*",
                "repository:a:pull,push",
                "repository:b:pull",
                "repository(plugin):a:pull",
            ]
        );
    }

    #[test]
    fn empty_input_yields_nothing() {
        assert!(parse_scopes([]).unwrap().is_empty());
        assert!(parse_scopes(["", " ", "  "]).unwrap().is_empty());
    }

    #[test]
    fn one_bad_piece_fails_the_whole_request() {
        let error = parse_scopes(["repository:a:pull", "repository:A:pull"]).unwrap_err();
        assert!(matches!(error, ScopeError::InvalidName { .. }));
    }

    #[test]
    fn rejects_malformed_scopes() {
        for text in ["", "repository", "repository:pull", "nocolons"] {
            assert!(
                matches!(parse_scope(text), Err(ScopeError::Malformed { .. })),
                "{text:?}"
            );
        }
    }

    #[test]
    fn rejects_bad_types() {
        for text in [
            "Repository:a:pull",
            ":a:pull",
            "repo-sitory:a:pull",
            "repository(:a:pull",
            "repository():a:pull",
            "repository(Plugin):a:pull",
            "repository(plugin:a:pull",
            "repository(plugin)x:a:pull",
        ] {
            assert!(
                matches!(parse_scope(text), Err(ScopeError::InvalidType { .. })),
                "{text:?}"
            );
        }
    }

    #[test]
    fn rejects_bad_or_missing_actions() {
        for text in [
            "repository:a:Pull",
            "repository:a:pull,pu-sh",
            "repository:a:**",
            "repository:a:pull1",
        ] {
            assert!(
                matches!(parse_scope(text), Err(ScopeError::InvalidAction { .. })),
                "{text:?}"
            );
        }
        for text in ["repository:a:", "repository:a:,,"] {
            assert!(
                matches!(parse_scope(text), Err(ScopeError::NoActions { .. })),
                "{text:?}"
            );
        }
        // A name with a port but no actions: the port is taken as the actions.
        assert!(matches!(
            parse_scope("repository:localhost:5000/a"),
            Err(ScopeError::InvalidAction { .. })
        ));
    }

    #[test]
    fn rejects_bad_repository_names_in_scopes() {
        let too_long = format!("repository:{}:pull", "a".repeat(256));
        for text in [
            "repository::pull",
            "repository:samalba/App:pull",
            "repository:a/../b:pull",
            "repository:..:pull",
            "repository:a//b:pull",
            "repository:/a:pull",
            "repository:a/:pull",
            "repository:a b:pull",
            "repository:a/-b:pull",
            "repository:a/b-:pull",
            "repository:a/b___c:pull",
            "repository:a/b..c:pull",
            "repository:my_host:5000/a:pull",
            too_long.as_str(),
        ] {
            assert!(
                matches!(parse_scope(text), Err(ScopeError::InvalidName { .. })),
                "{text:?}"
            );
        }
    }

    #[test]
    fn rejects_bad_plain_names() {
        let too_long = format!("registry:{}:*", "c".repeat(256));
        for text in [
            "registry::*",
            "registry:cat\talog:*",
            "registry:catalög:*",
            too_long.as_str(),
        ] {
            assert!(
                matches!(parse_scope(text), Err(ScopeError::InvalidName { .. })),
                "{text:?}"
            );
        }
    }

    #[test]
    fn repository_name_grammar() {
        for good in [
            "a",
            "samalba/my-app",
            "a/b/c",
            "a.b_c__d---e",
            "0/1",
            "localhost/app",
            "localhost:5000/a/b",
            "Registry.Example-1.com:5000/team/app",
            "UPPER/app",
            "x-y.example/app",
            &"a".repeat(255),
        ] {
            assert_eq!(validate_repository_name(good), Ok(()), "{good:?}");
        }
        for bad in [
            "",
            "UPPER",
            "localhost:5000",
            "-host/app",
            "host-/app",
            "host:/app",
            "host:50a/app",
            "a.-b/app",
            "host/App",
            "a/_b",
            "a/b_",
            "a/.",
            "a/./b",
            "./a",
            "a\\b",
            "a/b%2fc",
            &"a".repeat(256),
        ] {
            assert!(validate_repository_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn error_messages_name_the_input_and_the_reason() {
        let message = parse_scope("repository:Foo:pull").unwrap_err().to_string();
        assert!(message.contains("\"repository:Foo:pull\""), "{message}");
        assert!(message.contains("lower-case"), "{message}");

        let message = validate_repository_name("a//b").unwrap_err().to_string();
        assert_eq!(
            message,
            "repository name \"a//b\" is invalid: it has an empty path component \
             (a leading, trailing or doubled '/')"
        );

        let message = parse_scope("repository:a:Pull").unwrap_err().to_string();
        assert!(message.contains("\"Pull\""), "{message}");
    }

    #[test]
    fn error_messages_are_bounded() {
        let huge = format!("repository:{}:pull", "A".repeat(10_000));
        let message = parse_scope(&huge).unwrap_err().to_string();
        assert!(message.len() < 1_000, "{} bytes", message.len());
        assert_eq!(excerpt("ünïcödé"), "ünïcödé");
        assert!(excerpt(&"é".repeat(300)).ends_with("..."));
    }
}
