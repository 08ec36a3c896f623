//! Access-control rules: which subject may do what on which resource.
//!
//! Owns the rule format read from the configuration ([`RuleSpec`]), compiling it into an
//! [`Acl`], and evaluating it: rules are tried in order, the first rule matching the subject
//! and the resource decides, and no matching rule means no access. A rule with
//! `"actions": []` is an explicit deny: it matches, decides "nothing", and stops the search
//! (this is how a blacklist is written).
//!
//! Name patterns (`*`, `**`, `${account}`) and their matcher live in [`crate::pattern`].

use std::collections::BTreeSet;

use crate::pattern::{NamePattern, PatternProblem};
use crate::scope::{self, ResourceScope};

/// The actions a rule may list besides `*`.
const KNOWN_ACTIONS: [&str; 3] = ["pull", "push", "delete"];

/// One access rule as written in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Absent: anyone, anonymous included. `""`: anonymous only. `"*"`: any signed-in
    /// account. Anything else: exactly that account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// When present, the subject must be signed in and a member of this group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Resource type the rule applies to, compared exactly; `repository` unless given.
    #[serde(rename = "type", default = "default_resource_type")]
    pub resource_type: String,
    /// Name pattern with `*`, `**` and `${account}`; `**` (every name) unless given.
    #[serde(default = "default_name_pattern")]
    pub name: String,
    /// Actions granted: `pull`, `push`, `delete`, or `*` for all. Empty = explicit deny.
    pub actions: Vec<String>,
    /// Free text for the operator; ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

fn default_resource_type() -> String {
    "repository".to_owned()
}

fn default_name_pattern() -> String {
    "**".to_owned()
}

/// A rule list that cannot be compiled. Messages name the rule by its 1-based position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    /// An action other than `pull`, `push`, `delete` or `*` (spelling is case-sensitive).
    #[error("ACL rule {rule}: unknown action {action:?}; the known actions are \"pull\", \"push\", \"delete\" and \"*\" (lower case)")]
    UnknownAction {
        /// 1-based position of the rule.
        rule: usize,
        /// The rejected action.
        action: String,
    },
    /// The `type` is not lower-case letters and digits.
    #[error("ACL rule {rule}: resource type {resource_type:?} must be lower-case letters and digits, such as \"repository\" or \"registry\"")]
    InvalidResourceType {
        /// 1-based position of the rule.
        rule: usize,
        /// The rejected type.
        resource_type: String,
    },
    /// `"group": ""`, which no subject could be a member of.
    #[error("ACL rule {rule}: \"group\" is empty; leave it out to match subjects in any group")]
    EmptyGroup {
        /// 1-based position of the rule.
        rule: usize,
    },
    /// The name pattern cannot be compiled.
    #[error("ACL rule {rule}: name pattern {pattern:?} is invalid: {problem}")]
    InvalidPattern {
        /// 1-based position of the rule.
        rule: usize,
        /// The rejected pattern.
        pattern: String,
        /// What is wrong with it.
        problem: PatternProblem,
    },
    /// A rule that could never match: `${account}` together with `"account": ""`.
    #[error("ACL rule {rule}: the name pattern uses ${{account}} but the rule only matches anonymous requests, which have no account, so it can never match")]
    PlaceholderForAnonymous {
        /// 1-based position of the rule.
        rule: usize,
    },
}

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject<'a> {
    /// The signed-in account; `None` (or an empty name) means anonymous.
    pub account: Option<&'a str>,
    /// Groups of the account; ignored for anonymous subjects.
    pub groups: &'a [String],
}

impl Subject<'static> {
    /// The anonymous subject: no account, no groups.
    pub fn anonymous() -> Subject<'static> {
        Subject {
            account: None,
            groups: &[],
        }
    }
}

/// A compiled, ordered rule list. The empty list denies everything.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    account: AccountMatch,
    group: Option<String>,
    resource_type: String,
    name: NamePattern,
    actions: Actions,
}

#[derive(Debug, Clone)]
enum AccountMatch {
    Anyone,
    AnonymousOnly,
    AnySignedIn,
    Exactly(String),
}

/// What a grant allows on one resource: an ACL rule's `actions`, or the
/// entries of a token's `access` claim for one resource. The one place that
/// says what `*` means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actions {
    /// `*` was listed: every action, including the `*` that only a grant of
    /// everything covers (the registry's catalog needs it).
    Every,
    /// Exactly these actions; empty for an explicit deny.
    Listed(BTreeSet<String>),
}

/// Nothing at all: what a subject no rule matches may do.
static NOTHING: Actions = Actions::Listed(BTreeSet::new());

impl Actions {
    /// The grant a list of actions makes: [`Actions::Every`] if `*` is
    /// among them, otherwise exactly the listed ones.
    pub fn from_listed<'a>(actions: impl IntoIterator<Item = &'a str>) -> Actions {
        let mut listed = BTreeSet::new();
        for action in actions {
            if action == "*" {
                return Actions::Every;
            }
            listed.insert(action.to_owned());
        }
        Actions::Listed(listed)
    }

    /// Whether this grant allows every action of `needed`. A needed `*` is
    /// covered only by a grant of everything.
    pub fn covers(&self, needed: &BTreeSet<String>) -> bool {
        match self {
            Actions::Every => true,
            Actions::Listed(allowed) => needed.is_subset(allowed),
        }
    }

    /// What of `requested` this grant gives. A requested `*` stands for
    /// everything the grant allows (`*` itself only from a grant of
    /// everything); a grant of everything gives every requested action.
    pub fn intersect(&self, requested: &BTreeSet<String>) -> BTreeSet<String> {
        let wants_everything = requested.contains("*");
        match self {
            Actions::Every if wants_everything => BTreeSet::from(["*".to_owned()]),
            Actions::Every => requested.clone(),
            Actions::Listed(allowed) if wants_everything => allowed.clone(),
            Actions::Listed(allowed) => requested.intersection(allowed).cloned().collect(),
        }
    }

    /// The grant as a set of action names: `{"*"}` for everything.
    pub fn to_set(&self) -> BTreeSet<String> {
        match self {
            Actions::Every => BTreeSet::from(["*".to_owned()]),
            Actions::Listed(allowed) => allowed.clone(),
        }
    }
}

impl Acl {
    /// Compiles the configured rules, keeping their order.
    pub fn compile(rules: &[RuleSpec]) -> Result<Acl, AclError> {
        let rules = rules
            .iter()
            .enumerate()
            .map(|(index, spec)| compile_rule(index + 1, spec))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Acl { rules })
    }

    /// Actions the first matching rule allows on (type, name): `{"*"}` for a rule listing
    /// `*`, its listed actions otherwise, and the empty set if no rule matches or the first
    /// match is an explicit deny.
    pub fn allowed(&self, subject: &Subject, resource_type: &str, name: &str) -> BTreeSet<String> {
        self.actions(subject, resource_type, name).to_set()
    }

    /// Whether the subject may do everything `needed` asks on its resource.
    pub fn permits(&self, subject: &Subject, needed: &ResourceScope) -> bool {
        self.actions(subject, &needed.resource_type, &needed.name)
            .covers(&needed.actions)
    }

    /// Intersects each requested scope with what the subject may do on it.
    ///
    /// A requested `*` expands to everything the deciding rule allows (`*` itself only if
    /// the rule lists `*`); a rule listing `*` grants every requested action. Resources with
    /// nothing granted are left out; type, class and name are kept as requested.
    pub fn grant(&self, subject: &Subject, requested: &[ResourceScope]) -> Vec<ResourceScope> {
        requested
            .iter()
            .filter_map(|scope| {
                let granted = self
                    .actions(subject, &scope.resource_type, &scope.name)
                    .intersect(&scope.actions);
                (!granted.is_empty()).then(|| ResourceScope {
                    actions: granted,
                    ..scope.clone()
                })
            })
            .collect()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules (everything is denied).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// What the first rule matching the subject and resource allows;
    /// nothing if none matches.
    fn actions(&self, subject: &Subject, resource_type: &str, name: &str) -> &Actions {
        // An empty account name is treated as anonymous: it is the least privileged reading,
        // and it keeps `${account}/**` from turning into `/**`.
        let account = subject.account.filter(|account| !account.is_empty());
        let groups: &[String] = if account.is_some() {
            subject.groups
        } else {
            &[]
        };
        self.rules
            .iter()
            .find(|rule| rule.matches(account, groups, resource_type, name))
            .map_or(&NOTHING, |rule| &rule.actions)
    }
}

impl Rule {
    fn matches(
        &self,
        account: Option<&str>,
        groups: &[String],
        resource_type: &str,
        name: &str,
    ) -> bool {
        let account_ok = match (&self.account, account) {
            (AccountMatch::Anyone, _) => true,
            (AccountMatch::AnonymousOnly, None) => true,
            (AccountMatch::AnySignedIn, Some(_)) => true,
            (AccountMatch::Exactly(wanted), Some(actual)) => wanted == actual,
            _ => false,
        };
        let group_ok = self
            .group
            .as_ref()
            .is_none_or(|wanted| groups.iter().any(|group| group == wanted));
        account_ok
            && group_ok
            && self.resource_type == resource_type
            && self.name.matches(name, account)
    }
}

fn compile_rule(rule: usize, spec: &RuleSpec) -> Result<Rule, AclError> {
    let account = match spec.account.as_deref() {
        None => AccountMatch::Anyone,
        Some("") => AccountMatch::AnonymousOnly,
        Some("*") => AccountMatch::AnySignedIn,
        Some(exact) => AccountMatch::Exactly(exact.to_owned()),
    };
    if spec.group.as_deref() == Some("") {
        return Err(AclError::EmptyGroup { rule });
    }
    if !scope::is_lower_alphanumeric(&spec.resource_type) {
        return Err(AclError::InvalidResourceType {
            rule,
            resource_type: spec.resource_type.clone(),
        });
    }
    let name = NamePattern::compile(&spec.name).map_err(|problem| AclError::InvalidPattern {
        rule,
        pattern: spec.name.clone(),
        problem,
    })?;
    if name.uses_account() && matches!(account, AccountMatch::AnonymousOnly) {
        return Err(AclError::PlaceholderForAnonymous { rule });
    }

    if let Some(unknown) = spec
        .actions
        .iter()
        .find(|action| *action != "*" && !KNOWN_ACTIONS.contains(&action.as_str()))
    {
        return Err(AclError::UnknownAction {
            rule,
            action: unknown.clone(),
        });
    }
    let actions = Actions::from_listed(spec.actions.iter().map(String::as_str));

    Ok(Rule {
        account,
        group: spec.group.clone(),
        resource_type: spec.resource_type.clone(),
        name,
        actions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::parse_scopes;

    fn acl(json: &str) -> Acl {
        let specs: Vec<RuleSpec> = serde_json::from_str(json).unwrap();
        Acl::compile(&specs).unwrap()
    }

    fn compile_error(json: &str) -> AclError {
        let specs: Vec<RuleSpec> = serde_json::from_str(json).unwrap();
        Acl::compile(&specs).unwrap_err()
    }

    fn user<'a>(account: &'a str, groups: &'a [String]) -> Subject<'a> {
        Subject {
            account: Some(account),
            groups,
        }
    }

    /// Allowed repository actions, joined for compact assertions.
    fn repo(acl: &Acl, subject: &Subject, name: &str) -> String {
        let allowed: Vec<String> = acl
            .allowed(subject, "repository", name)
            .into_iter()
            .collect();
        allowed.join(",")
    }

    /// Grants for space-separated scope text, rendered back to scope text.
    fn grant(acl: &Acl, subject: &Subject, requested: &str) -> Vec<String> {
        let requested = parse_scopes([requested]).unwrap();
        acl.grant(subject, &requested)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const NONE: &[String] = &[];

    #[test]
    fn rule_spec_reads_the_documented_config_shape() {
        let specs: Vec<RuleSpec> = serde_json::from_str(
            r#"[
                { "account": "alice", "type": "registry", "name": "catalog", "actions": ["*"] },
                { "account": "*", "name": "${account}/**", "actions": ["pull", "push", "delete"] },
                { "account": "", "name": "public/**", "actions": ["pull"] },
                { "group": "staff", "name": "**", "actions": ["pull","push","delete"], "comment": "free text, ignored" },
                { "actions": [] }
            ]"#,
        )
        .unwrap();
        assert_eq!(specs.len(), 5);
        assert_eq!(specs[0].resource_type, "registry");
        assert_eq!(specs[1].resource_type, "repository");
        assert_eq!(specs[4].name, "**");
        assert_eq!(specs[4].account, None);
        assert_eq!(Acl::compile(&specs).unwrap().len(), 5);
    }

    #[test]
    fn rule_spec_rejects_unknown_fields_and_missing_actions() {
        assert!(serde_json::from_str::<RuleSpec>(r#"{"acount": "x", "actions": []}"#).is_err());
        assert!(serde_json::from_str::<RuleSpec>(r#"{"name": "**"}"#).is_err());
    }

    #[test]
    fn rule_spec_round_trips() {
        let spec: RuleSpec =
            serde_json::from_str(r#"{"group":"staff","actions":["pull"],"comment":"c"}"#).unwrap();
        let text = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<RuleSpec>(&text).unwrap(), spec);
        assert!(!text.contains("account"));
    }

    #[test]
    fn empty_acl_denies_everything() {
        let acl = Acl::compile(&[]).unwrap();
        assert!(acl.is_empty());
        assert_eq!(repo(&acl, &user("alice", NONE), "alice/app"), "");
        assert!(grant(&acl, &user("alice", NONE), "repository:a:*").is_empty());
    }

    #[test]
    fn first_match_wins_and_default_is_deny() {
        let acl = acl(r#"[
            { "account": "alice", "name": "team/app", "actions": ["pull"] },
            { "account": "alice", "name": "team/**", "actions": ["pull", "push"] }
        ]"#);
        let alice = user("alice", NONE);
        assert_eq!(repo(&acl, &alice, "team/app"), "pull");
        assert_eq!(repo(&acl, &alice, "team/other"), "pull,push");
        assert_eq!(repo(&acl, &alice, "elsewhere"), "");
        assert_eq!(acl.len(), 2);
    }

    #[test]
    fn account_forms() {
        let acl = acl(r#"[
            { "account": "",      "name": "anon-only",    "actions": ["pull"] },
            { "account": "*",     "name": "members-only", "actions": ["pull"] },
            { "account": "alice", "name": "alice-only",   "actions": ["pull"] },
            {                     "name": "everyone",     "actions": ["pull"] }
        ]"#);
        let anonymous = Subject::anonymous();
        let alice = user("alice", NONE);
        let bob = user("bob", NONE);
        let table = [
            (&anonymous, "anon-only", "pull"),
            (&anonymous, "members-only", ""),
            (&anonymous, "alice-only", ""),
            (&anonymous, "everyone", "pull"),
            (&alice, "anon-only", ""),
            (&alice, "members-only", "pull"),
            (&alice, "alice-only", "pull"),
            (&alice, "everyone", "pull"),
            (&bob, "alice-only", ""),
            (&bob, "members-only", "pull"),
        ];
        for (subject, name, expected) in table {
            assert_eq!(repo(&acl, subject, name), expected, "{subject:?} on {name}");
        }
    }

    #[test]
    fn empty_account_name_counts_as_anonymous() {
        let acl = acl(r#"[
            { "account": "*", "actions": ["pull"] },
            { "account": "",  "name": "public", "actions": ["pull"] }
        ]"#);
        let staff = vec!["staff".to_owned()];
        let nameless = user("", &staff);
        assert_eq!(repo(&acl, &nameless, "private"), "");
        assert_eq!(repo(&acl, &nameless, "public"), "pull");
    }

    #[test]
    fn group_rules_need_membership_and_an_account() {
        let acl = acl(r#"[
            { "group": "staff", "actions": ["pull", "push"] },
            { "account": "", "actions": ["pull"] }
        ]"#);
        let staff = vec!["dev".to_owned(), "staff".to_owned()];
        let dev = vec!["dev".to_owned()];
        assert_eq!(repo(&acl, &user("carol", &staff), "x"), "pull,push");
        assert_eq!(repo(&acl, &user("dave", &dev), "x"), "");
        // Groups handed in for an anonymous subject are ignored.
        let anonymous_with_groups = Subject {
            account: None,
            groups: &staff,
        };
        assert_eq!(repo(&acl, &anonymous_with_groups, "x"), "pull");
    }

    #[test]
    fn resource_type_is_compared_exactly() {
        let acl = acl(r#"[
            { "account": "alice", "type": "registry", "name": "catalog", "actions": ["*"] },
            { "account": "alice", "actions": ["pull"] }
        ]"#);
        let alice = user("alice", NONE);
        assert_eq!(
            grant(&acl, &alice, "registry:catalog:*"),
            ["registry:catalog:*"]
        );
        assert_eq!(repo(&acl, &alice, "catalog"), "pull");
        assert!(acl.allowed(&alice, "registry", "other").is_empty());
        assert!(grant(&acl, &user("bob", NONE), "registry:catalog:*").is_empty());
    }

    #[test]
    fn account_placeholder_is_literal() {
        let acl = acl(r#"[
            { "account": "*", "name": "${account}/**", "actions": ["pull", "push"] },
            { "name": "shared-${account}", "actions": ["pull"] }
        ]"#);
        assert_eq!(repo(&acl, &user("alice", NONE), "alice/app"), "pull,push");
        assert_eq!(repo(&acl, &user("alice", NONE), "alice/a/b"), "pull,push");
        assert_eq!(repo(&acl, &user("alice", NONE), "alice"), "");
        assert_eq!(repo(&acl, &user("alice", NONE), "bob/app"), "");
        assert_eq!(repo(&acl, &user("alice", NONE), "shared-alice"), "pull");
        // Glob characters inside an account name match only themselves.
        assert_eq!(repo(&acl, &user("*", NONE), "alice/app"), "");
        assert_eq!(repo(&acl, &user("*", NONE), "*/app"), "pull,push");
        assert_eq!(repo(&acl, &user("a*", NONE), "alice/app"), "");
        assert_eq!(repo(&acl, &user("**", NONE), "x/y/app"), "");
        // Anonymous never matches a placeholder rule, even one open to anyone.
        assert_eq!(repo(&acl, &Subject::anonymous(), "shared-"), "");
    }

    #[test]
    fn star_rule_grants_what_is_requested() {
        let acl = acl(r#"[{ "account": "root", "actions": ["*"] }]"#);
        let root = user("root", NONE);
        assert_eq!(
            grant(&acl, &root, "repository:a:pull"),
            ["repository:a:pull"]
        );
        assert_eq!(
            grant(&acl, &root, "repository:a:pull,push"),
            ["repository:a:pull,push"]
        );
        assert_eq!(grant(&acl, &root, "repository:a:*"), ["repository:a:*"]);
        assert_eq!(
            grant(&acl, &root, "repository:a:*,pull"),
            ["repository:a:*"]
        );
        assert_eq!(repo(&acl, &root, "a"), "*");
    }

    #[test]
    fn requested_star_expands_to_the_rules_actions() {
        let acl = acl(r#"[{ "account": "alice", "actions": ["pull", "delete"] }]"#);
        let alice = user("alice", NONE);
        assert_eq!(
            grant(&acl, &alice, "repository:a:*"),
            ["repository:a:delete,pull"]
        );
        assert_eq!(
            grant(&acl, &alice, "repository:a:pull,push"),
            ["repository:a:pull"]
        );
        assert!(grant(&acl, &alice, "repository:a:push").is_empty());
    }

    #[test]
    fn push_does_not_imply_pull() {
        let acl = acl(r#"[{ "account": "bot", "actions": ["push"] }]"#);
        assert_eq!(
            grant(&acl, &user("bot", NONE), "repository:a:pull,push"),
            ["repository:a:push"]
        );
    }

    #[test]
    fn grant_keeps_class_and_omits_denied_resources() {
        let acl =
            acl(r#"[{ "account": "alice", "name": "alice/**", "actions": ["pull", "push"] }]"#);
        let granted = grant(
            &acl,
            &user("alice", NONE),
            "repository(plugin):alice/p:pull repository:bob/x:pull repository:alice/y:push,delete",
        );
        assert_eq!(
            granted,
            ["repository:alice/y:push", "repository(plugin):alice/p:pull"]
        );
    }

    #[test]
    fn explicit_deny_stops_the_search() {
        let acl = acl(r#"[
            { "name": "secret/**", "actions": [] },
            { "actions": ["pull"] }
        ]"#);
        assert_eq!(repo(&acl, &user("alice", NONE), "secret/x"), "");
        assert!(grant(&acl, &user("alice", NONE), "repository:secret/x:*").is_empty());
        assert_eq!(repo(&acl, &user("alice", NONE), "open"), "pull");
    }

    /// Seed (a): the Python service's per-user map, e.g.
    /// `{"alice": {"*": ["pull"], "alice/app": ["pull","push"]}, "bob": {"*": ["pull","push"]}}`,
    /// as ordered rules: each user's specific repositories first, the user's default last.
    #[test]
    fn seed_per_user_map() {
        let acl = acl(r#"[
            { "account": "alice", "name": "alice/app", "actions": ["pull", "push"] },
            { "account": "alice", "name": "**",        "actions": ["pull"] },
            { "account": "bob",   "name": "**",        "actions": ["pull", "push"] }
        ]"#);
        let (alice, bob) = (user("alice", NONE), user("bob", NONE));
        assert_eq!(
            grant(&acl, &alice, "repository:alice/app:pull,push"),
            ["repository:alice/app:pull,push"]
        );
        assert_eq!(
            grant(&acl, &alice, "repository:other:pull,push"),
            ["repository:other:pull"]
        );
        assert_eq!(
            grant(&acl, &bob, "repository:alice/app:push,pull"),
            ["repository:alice/app:pull,push"]
        );
        assert!(grant(&acl, &Subject::anonymous(), "repository:alice/app:pull").is_empty());
        assert!(grant(&acl, &user("mallory", NONE), "repository:x:pull").is_empty());
    }

    /// Seed (b): anonymous pull of a whitelist; signed-in users pull and push everything.
    #[test]
    fn seed_anonymous_whitelist() {
        let acl = acl(r#"[
            { "account": "",  "name": "some-image", "actions": ["pull"] },
            { "account": "",  "name": "tools/**",   "actions": ["pull"] },
            { "account": "*", "name": "**",         "actions": ["pull", "push"] }
        ]"#);
        let anonymous = Subject::anonymous();
        assert_eq!(repo(&acl, &anonymous, "some-image"), "pull");
        assert_eq!(repo(&acl, &anonymous, "tools/jq"), "pull");
        assert_eq!(repo(&acl, &anonymous, "private"), "");
        assert!(grant(&acl, &anonymous, "repository:some-image:pull,push").len() == 1);
        assert_eq!(repo(&acl, &user("bar", NONE), "private"), "pull,push");
    }

    /// Seed (c): anonymous pull of everything except a blacklist, written as explicit denies
    /// before the catch-all; signed-in users are not affected by the blacklist.
    #[test]
    fn seed_anonymous_blacklist() {
        let acl = acl(r#"[
            { "account": "",  "name": "internal/**", "actions": [], "comment": "blacklisted" },
            { "account": "",  "name": "secret-app",  "actions": [], "comment": "blacklisted" },
            { "account": "",  "name": "**",          "actions": ["pull"] },
            { "account": "*", "name": "**",          "actions": ["pull", "push"] }
        ]"#);
        let anonymous = Subject::anonymous();
        assert_eq!(repo(&acl, &anonymous, "internal/db"), "");
        assert_eq!(repo(&acl, &anonymous, "secret-app"), "");
        assert_eq!(repo(&acl, &anonymous, "secret-app2"), "pull");
        assert_eq!(repo(&acl, &anonymous, "library/alpine"), "pull");
        assert_eq!(repo(&acl, &user("foo", NONE), "internal/db"), "pull,push");
    }

    /// Seed (d): Pulp's basic mode: everyone, anonymous too, pulls everything; only staff
    /// push and delete (and list the catalog).
    #[test]
    fn seed_pulp_basic_mode() {
        let acl = acl(r#"[
            { "group": "staff", "type": "registry", "name": "catalog", "actions": ["*"] },
            { "group": "staff", "actions": ["pull", "push", "delete"] },
            { "actions": ["pull"] }
        ]"#);
        let staff = vec!["staff".to_owned()];
        let admin = user("admin", &staff);
        assert_eq!(
            grant(&acl, &admin, "repository:foo/bar:*"),
            ["repository:foo/bar:delete,pull,push"]
        );
        assert_eq!(
            grant(&acl, &admin, "registry:catalog:*"),
            ["registry:catalog:*"]
        );
        assert_eq!(
            grant(&acl, &user("joe", NONE), "repository:foo/bar:pull,push"),
            ["repository:foo/bar:pull"]
        );
        assert_eq!(
            grant(&acl, &Subject::anonymous(), "repository:foo/bar:*"),
            ["repository:foo/bar:pull"]
        );
        assert!(grant(&acl, &Subject::anonymous(), "registry:catalog:*").is_empty());
    }

    #[test]
    fn compile_errors_name_the_rule_and_problem() {
        let error = compile_error(r#"[{ "actions": ["pull"] }, { "actions": ["Pull"] }]"#);
        assert_eq!(
            error,
            AclError::UnknownAction {
                rule: 2,
                action: "Pull".to_owned()
            }
        );
        assert!(error
            .to_string()
            .starts_with("ACL rule 2: unknown action \"Pull\""));

        assert!(matches!(
            compile_error(r#"[{ "type": "Repository", "actions": ["pull"] }]"#),
            AclError::InvalidResourceType { rule: 1, .. }
        ));
        assert!(matches!(
            compile_error(r#"[{ "group": "", "actions": ["pull"] }]"#),
            AclError::EmptyGroup { rule: 1 }
        ));
        assert!(matches!(
            compile_error(r#"[{ "account": "", "name": "${account}/**", "actions": ["pull"] }]"#),
            AclError::PlaceholderForAnonymous { rule: 1 }
        ));
        for action in ["", "read", "PUSH", " pull", "**"] {
            let json = format!(r#"[{{ "actions": ["{action}"] }}]"#);
            assert!(
                matches!(compile_error(&json), AclError::UnknownAction { .. }),
                "{action:?}"
            );
        }

        // What is wrong with each bad pattern is checked in `pattern`'s tests; here, that
        // the rule reports it with its position and the pattern text (an empty name too,
        // which is not the same as leaving `name` out).
        let bad_patterns = [
            "",
            "a/***",
            "${user}/**",
            "$account/**",
            "a/?",
            "a/[bc]",
            "{a,b}",
            "a b",
            "é",
        ];
        for pattern in bad_patterns {
            let json = serde_json::json!([{ "name": pattern, "actions": ["pull"] }]).to_string();
            let problem = NamePattern::compile(pattern).expect_err("a bad pattern");
            assert_eq!(
                compile_error(&json),
                AclError::InvalidPattern {
                    rule: 1,
                    pattern: pattern.to_owned(),
                    problem
                },
                "{pattern:?}"
            );
        }
        let message = compile_error(r#"[{ "name": "a/[b]", "actions": ["pull"] }]"#).to_string();
        assert!(
            message.contains("ACL rule 1") && message.contains("'['"),
            "{message}"
        );
    }

    fn set(actions: &[&str]) -> BTreeSet<String> {
        actions.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn star_means_everything_once_for_rules_and_tokens() {
        let every = Actions::from_listed(["pull", "*"]);
        assert_eq!(every, Actions::Every);
        assert!(every.covers(&set(&["*"])));
        assert!(every.covers(&set(&["pull", "delete"])));
        assert_eq!(every.intersect(&set(&["push"])), set(&["push"]));
        assert_eq!(every.intersect(&set(&["*", "pull"])), set(&["*"]));

        let listed = Actions::from_listed(["pull", "push"]);
        assert!(listed.covers(&set(&["pull", "push"])));
        assert!(!listed.covers(&set(&["pull", "delete"])));
        assert!(
            !listed.covers(&set(&["*"])),
            "a needed * is covered only by *"
        );
        assert_eq!(listed.intersect(&set(&["*"])), set(&["pull", "push"]));
        assert_eq!(listed.intersect(&set(&["push", "delete"])), set(&["push"]));
        assert_eq!(listed.to_set(), set(&["pull", "push"]));
        assert_eq!(every.to_set(), set(&["*"]));
    }

    #[test]
    fn permits_agrees_with_grant() {
        let acl = acl(r#"[
            { "account": "alice", "type": "registry", "name": "catalog", "actions": ["*"] },
            { "account": "*", "name": "${account}/**", "actions": ["pull", "push"] },
            { "name": "public/**", "actions": ["pull"] },
            { "name": "closed/**", "actions": [] }
        ]"#);
        let alice = user("alice", NONE);
        let anonymous = Subject::anonymous();
        for subject in [&alice, &anonymous] {
            for text in [
                "registry:catalog:*",
                "repository:alice/app:pull,push",
                "repository:alice/app:delete",
                "repository:alice/app:*",
                "repository:public/x:pull",
                "repository:public/x:pull,push",
                "repository:closed/x:pull",
                "repository:elsewhere:pull",
            ] {
                let needed = parse_scopes([text]).unwrap().remove(0);
                let granted = acl.grant(subject, std::slice::from_ref(&needed));
                let whole = granted.first().is_some_and(|g| g.actions == needed.actions);
                assert_eq!(acl.permits(subject, &needed), whole, "{subject:?} {text}");
            }
        }
    }
}
