//! Access-control rules: which subject may do what on which resource.
//!
//! Owns the rule format read from the configuration ([`RuleSpec`]), compiling it into an
//! [`Acl`], and evaluating it: rules are tried in order, the first rule matching the subject
//! and the resource decides, and no matching rule means no access. A rule with
//! `"actions": []` is an explicit deny: it matches, decides "nothing", and stops the search
//! (this is how a blacklist is written).
//!
//! Name patterns (`*`, `**`, `${account}`) and their matcher live in [`crate::pattern`].
//! `${account}` stands only for an [`AccountName`]: one repository path component. Any
//! other name (`alice/team`, `..`, `Alice`, `a@b`) would reach into, or out of, a namespace
//! it does not own, so a rule using `${account}` never matches it (and the log says why).

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
    /// Tag patterns (`*` stands for any run of tag characters): a manifest written or
    /// deleted by tag is decided by this rule only if the tag matches one of them. See
    /// [`ManifestWrite`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// `true`: a manifest written or deleted by digest is decided by this rule. A rule
    /// with `tags` but without `"digests": true` does not decide writes by digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digests: Option<bool>,
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
    /// A `tags` pattern that is empty or holds characters no tag has.
    #[error("ACL rule {rule}: tag pattern {pattern:?} is invalid; tags are letters, digits, '_', '.' and '-' (not first), and '*' stands for any run of them")]
    InvalidTagPattern {
        /// 1-based position of the rule.
        rule: usize,
        /// The rejected pattern.
        pattern: String,
    },
    /// `"tags": []` or `"digests": false` alone: conditions no write could meet.
    #[error("ACL rule {rule}: {problem}")]
    UselessReferenceCondition {
        /// 1-based position of the rule.
        rule: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// A rule that could never match: `${account}` together with `"account": ""`.
    #[error("ACL rule {rule}: the name pattern uses ${{account}} but the rule only matches anonymous requests, which have no account, so it can never match")]
    PlaceholderForAnonymous {
        /// 1-based position of the rule.
        rule: usize,
    },
}

/// An account name that `${account}` may stand for: exactly one repository path component
/// (lower-case letters and digits, joined by `.`, `_`, `__` or dashes; at most 255
/// characters), so that `${account}/**` is a namespace of its own and nothing else.
///
/// File users must have such names (config load refuses others). Names that come from
/// elsewhere (a trusted front proxy's header, a directory, a federated identity) are
/// checked with [`AccountName::parse`] where they are used: an account whose name fails
/// it may still match rules that name it exactly or by `*`, never a `${account}` pattern.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountName(String);

/// Why a name cannot be an [`AccountName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountNameError {
    /// The empty name, which means anonymous.
    #[error("an account name cannot be empty (empty means anonymous)")]
    Empty,
    /// Longer than a repository name may be.
    #[error("account name is {length} characters long; the limit is 255")]
    TooLong {
        /// Length in bytes.
        length: usize,
    },
    /// Not one repository path component.
    #[error("account name {name:?} is not one repository path component (lower-case letters and digits, joined by '.', '_', '__' or '-'): as ${{account}} in a name pattern it would {consequence}")]
    NotAComponent {
        /// The rejected name (possibly shortened).
        name: String,
        /// What it would do as `${account}`.
        consequence: &'static str,
    },
}

impl AccountName {
    /// Checks that `name` is one repository path component.
    pub fn parse(name: &str) -> Result<AccountName, AccountNameError> {
        if name.is_empty() {
            return Err(AccountNameError::Empty);
        }
        if name.len() > scope::NAME_MAX_LEN {
            return Err(AccountNameError::TooLong { length: name.len() });
        }
        if scope::is_path_component(name) {
            return Ok(AccountName(name.to_owned()));
        }
        let consequence = if name.contains('/') {
            "reach into another namespace"
        } else if name == "." || name == ".." {
            "name a relative path"
        } else if name.contains(['*', '?', '[', '{', '$']) {
            "look like a pattern"
        } else {
            "make a repository name the registry refuses"
        };
        Err(AccountNameError::NotAComponent {
            name: scope::excerpt(name),
            consequence,
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for AccountName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A manifest write (`PUT` or `DELETE` of `/v2/<name>/manifests/<reference>`), by what it
/// names. Tokens cannot carry a tag, so rules with `tags` or `digests` are checked at
/// request time by `/auth`, with the write in hand.
///
/// The semantics, like `account` and `group`, are match conditions: a write by tag is
/// decided only by rules whose `tags` match it, or that have neither `tags` nor `digests`;
/// a write by digest only by rules with `"digests": true`, or with neither condition. A
/// rule whose condition does not hold is skipped and the next rule is tried. Everything
/// that is not a manifest write (pulls, blob uploads, token requests) ignores the
/// conditions: the rule applies as if it had none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestWrite<'a> {
    /// By tag, e.g. `latest`.
    Tag(&'a str),
    /// By digest, e.g. `sha256:...`.
    Digest,
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
    /// The rule as written, for `regauth explain`.
    spec: RuleSpec,
    account: AccountMatch,
    group: Option<String>,
    resource_type: String,
    name: NamePattern,
    references: ReferenceCondition,
    actions: Actions,
}

/// A rule's `tags`/`digests` conditions on manifest writes.
#[derive(Debug, Clone)]
enum ReferenceCondition {
    /// Neither: every write.
    Any,
    /// Writes by a matching tag, and by digest when `digests` is true.
    Only {
        tags: Vec<NamePattern>,
        digests: bool,
    },
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
    Listed(ActionSet),
}

/// Nothing at all: what a subject no rule matches may do.
static NOTHING: Actions = Actions::Listed(ActionSet::EMPTY);

impl Actions {
    /// The grant a list of actions makes: [`Actions::Every`] if `*` is
    /// among them, otherwise exactly the listed ones.
    pub fn from_listed<'a>(actions: impl IntoIterator<Item = &'a str>) -> Actions {
        let (mut known, mut others) = (0, Vec::new());
        for action in actions {
            if action == "*" {
                return Actions::Every;
            }
            match known_bit(action) {
                Some(bit) => known |= bit,
                None => others.push(action.into()),
            }
        }
        Actions::Listed(ActionSet::new(known, others))
    }

    /// Whether this grant allows every action of `needed`. A needed `*` is
    /// covered only by a grant of everything.
    pub fn covers(&self, needed: &BTreeSet<String>) -> bool {
        match self {
            Actions::Every => true,
            Actions::Listed(allowed) => needed.iter().all(|action| allowed.contains(action)),
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
            Actions::Listed(_) if wants_everything => self.to_set(),
            Actions::Listed(allowed) => requested
                .iter()
                .filter(|action| allowed.contains(action))
                .cloned()
                .collect(),
        }
    }

    /// The grant as a set of action names: `{"*"}` for everything.
    pub fn to_set(&self) -> BTreeSet<String> {
        match self {
            Actions::Every => BTreeSet::from(["*".to_owned()]),
            Actions::Listed(allowed) => allowed.iter().map(str::to_owned).collect(),
        }
    }

    /// Heap bytes the grant holds beyond its own size (for the weights of
    /// the verified-token cache): only names other than the registry's own.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Actions::Every => 0,
            Actions::Listed(allowed) => allowed
                .others()
                .iter()
                .map(|other| std::mem::size_of::<Box<str>>() + other.len())
                .sum(),
        }
    }
}

/// A set of action names other than `*`, kept small: the verified-token
/// cache holds one per resource of every cached token. The registry's own
/// actions (`pull`, `push`, `delete`) are one bit each and allocate
/// nothing; any other name (only a token can carry one: rules are checked
/// at load) is kept spelled out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionSet {
    /// Bit `i` set: `KNOWN_ACTIONS[i]` is in the set.
    known: u8,
    /// Other names, sorted and without duplicates (so that equal sets
    /// compare equal); `None` rather than empty, so that the empty set can
    /// be a constant.
    others: Option<Box<[Box<str>]>>,
}

impl ActionSet {
    /// The empty set.
    pub const EMPTY: ActionSet = ActionSet {
        known: 0,
        others: None,
    };

    fn new(known: u8, mut others: Vec<Box<str>>) -> ActionSet {
        others.sort_unstable();
        others.dedup();
        ActionSet {
            known,
            others: (!others.is_empty()).then(|| others.into_boxed_slice()),
        }
    }

    /// Whether `action` is in the set.
    pub fn contains(&self, action: &str) -> bool {
        match known_bit(action) {
            Some(bit) => self.known & bit != 0,
            None => self
                .others()
                .binary_search_by(|other| (**other).cmp(action))
                .is_ok(),
        }
    }

    /// The names in the set.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        KNOWN_ACTIONS
            .iter()
            .enumerate()
            .filter(|(index, _)| self.known & (1 << index) != 0)
            .map(|(_, action)| *action)
            .chain(self.others().iter().map(|other| &**other))
    }

    fn others(&self) -> &[Box<str>] {
        self.others.as_deref().unwrap_or_default()
    }
}

/// The bit of one of the registry's own actions.
fn known_bit(action: &str) -> Option<u8> {
    KNOWN_ACTIONS
        .iter()
        .position(|known| *known == action)
        .map(|index| 1 << index)
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
        self.actions(subject, resource_type, name, None).to_set()
    }

    /// Whether the subject may do everything `needed` asks on its resource.
    pub fn permits(&self, subject: &Subject, needed: &ResourceScope) -> bool {
        self.actions(subject, &needed.resource_type, &needed.name, None)
            .covers(&needed.actions)
    }

    /// Like [`Acl::permits`], for the repository a manifest write goes to: rules with
    /// `tags` or `digests` decide it only when their condition holds (see
    /// [`ManifestWrite`]). `/auth` asks this at request time, since tokens carry no tags.
    pub fn permits_write(
        &self,
        subject: &Subject,
        needed: &ResourceScope,
        write: ManifestWrite,
    ) -> bool {
        self.actions(subject, &needed.resource_type, &needed.name, Some(write))
            .covers(&needed.actions)
    }

    /// Like [`Acl::allowed`] on a repository, for a manifest write: rules with `tags` or
    /// `digests` decide it only when their condition holds (see [`ManifestWrite`]).
    pub fn allowed_for_write(
        &self,
        subject: &Subject,
        name: &str,
        write: ManifestWrite,
    ) -> BTreeSet<String> {
        self.actions(subject, "repository", name, Some(write))
            .to_set()
    }

    /// Whether any rule has `tags` or `digests`. Only then can a manifest write be decided
    /// differently from the token that allows it, so only then must `/auth` ask.
    pub fn has_reference_rules(&self) -> bool {
        self.rules
            .iter()
            .any(|rule| matches!(rule.references, ReferenceCondition::Only { .. }))
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
                    .actions(subject, &scope.resource_type, &scope.name, None)
                    .intersect(&scope.actions);
                (!granted.is_empty()).then(|| ResourceScope {
                    actions: granted,
                    ..scope.clone()
                })
            })
            .collect()
    }

    /// Every rule tried for one resource, in order, until the first that decides: why each
    /// was skipped, and what the deciding one grants (`regauth explain`). The grant is what
    /// [`Acl::allowed`] (or [`Acl::allowed_for_write`] when `write` is given) returns.
    pub fn explain(
        &self,
        subject: &Subject,
        resource_type: &str,
        name: &str,
        write: Option<ManifestWrite>,
    ) -> Vec<RuleVerdict> {
        let asker = Asker::new(subject);
        let mut verdicts = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            let outcome = match rule.check(&asker, resource_type, name, write) {
                Ok(()) => Verdict::Decides(rule.actions.to_set()),
                Err(skip) => Verdict::Skipped(rule.describe(&skip, &asker, name, write)),
            };
            let decided = matches!(outcome, Verdict::Decides(_));
            verdicts.push(RuleVerdict {
                rule: index + 1,
                spec: rule.spec.clone(),
                outcome,
            });
            if decided {
                break;
            }
        }
        verdicts
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules (everything is denied).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// What the first rule matching the subject, the resource and (for a manifest write)
    /// what it writes allows; nothing if none matches.
    fn actions(
        &self,
        subject: &Subject,
        resource_type: &str,
        name: &str,
        write: Option<ManifestWrite>,
    ) -> &Actions {
        let asker = Asker::new(subject);
        let mut unexpandable = None;
        for (index, rule) in self.rules.iter().enumerate() {
            match rule.check(&asker, resource_type, name, write) {
                Ok(()) => return &rule.actions,
                Err(Skip::AccountNotExpandable(reason)) if unexpandable.is_none() => {
                    unexpandable = Some((index + 1, reason));
                }
                Err(_) => {}
            }
        }
        // Said once per decision: the account exists, but its name cannot stand for
        // ${account}, which the operator should hear about.
        if let Some((rule, reason)) = unexpandable {
            tracing::info!(
                target: "regauth::acl",
                account = ?subject.account.unwrap_or_default(),
                rule,
                reason = %reason,
                "ACL rule skipped: the account name cannot stand for ${{account}}"
            );
        }
        &NOTHING
    }
}

/// One rule's part in a decision, for `regauth explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleVerdict {
    /// 1-based position of the rule.
    pub rule: usize,
    /// The rule as configured.
    pub spec: RuleSpec,
    /// What it did.
    pub outcome: Verdict,
}

/// What a rule did for one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It did not apply; why.
    Skipped(String),
    /// It applied and decided: these actions (`*` for all; empty for an explicit deny).
    Decides(BTreeSet<String>),
}

/// The subject as rules see it. An empty account name is treated as anonymous: it is the
/// least privileged reading, and it keeps `${account}/**` from turning into `/**`. Groups
/// count only for a signed-in account.
struct Asker<'a> {
    account: Option<&'a str>,
    /// The account when it may stand for `${account}`, or why not.
    expansion: Option<Result<&'a str, AccountNameError>>,
    groups: &'a [String],
}

impl<'a> Asker<'a> {
    fn new(subject: &Subject<'a>) -> Asker<'a> {
        let account = subject.account.filter(|account| !account.is_empty());
        Asker {
            account,
            expansion: account.map(|name| AccountName::parse(name).map(|_| name)),
            groups: if account.is_some() {
                subject.groups
            } else {
                &[]
            },
        }
    }
}

/// Why a rule did not decide a request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Skip {
    /// The rule is for another account, for anonymous callers only, or for signed-in ones.
    Account,
    /// The subject is not in the rule's group.
    Group,
    /// The rule is for another resource type.
    Type,
    /// The name does not match the rule's pattern.
    Name,
    /// The pattern uses `${account}` and the account's name cannot stand for it.
    AccountNotExpandable(AccountNameError),
    /// A write by a tag that none of the rule's `tags` match.
    Tag,
    /// A write by digest, and the rule has `tags` without `"digests": true`.
    Digest,
}

impl Rule {
    /// Whether this rule decides for `asker` on (type, name), or why it is skipped.
    fn check(
        &self,
        asker: &Asker,
        resource_type: &str,
        name: &str,
        write: Option<ManifestWrite>,
    ) -> Result<(), Skip> {
        let account_ok = match (&self.account, asker.account) {
            (AccountMatch::Anyone, _) => true,
            (AccountMatch::AnonymousOnly, None) => true,
            (AccountMatch::AnySignedIn, Some(_)) => true,
            (AccountMatch::Exactly(wanted), Some(actual)) => wanted == actual,
            _ => false,
        };
        if !account_ok {
            return Err(Skip::Account);
        }
        let group_ok = self
            .group
            .as_ref()
            .is_none_or(|wanted| asker.groups.iter().any(|group| group == wanted));
        if !group_ok {
            return Err(Skip::Group);
        }
        if self.resource_type != resource_type {
            return Err(Skip::Type);
        }
        let expansion = match &asker.expansion {
            Some(Err(reason)) if self.name.uses_account() => {
                return Err(Skip::AccountNotExpandable(reason.clone()))
            }
            Some(Ok(account)) => Some(*account),
            _ => None,
        };
        if !self.name.matches(name, expansion) {
            return Err(Skip::Name);
        }
        match (&self.references, write) {
            (ReferenceCondition::Only { tags, .. }, Some(ManifestWrite::Tag(tag)))
                if !tags.iter().any(|pattern| pattern.matches(tag, None)) =>
            {
                Err(Skip::Tag)
            }
            (ReferenceCondition::Only { digests: false, .. }, Some(ManifestWrite::Digest)) => {
                Err(Skip::Digest)
            }
            _ => Ok(()),
        }
    }
}

impl Rule {
    /// Why this rule was skipped, in words an operator can act on.
    fn describe(
        &self,
        skip: &Skip,
        asker: &Asker,
        name: &str,
        write: Option<ManifestWrite>,
    ) -> String {
        match skip {
            Skip::Account => match (&self.account, asker.account) {
                (AccountMatch::AnonymousOnly, _) => {
                    "the rule is for anonymous callers only (\"account\": \"\")".to_owned()
                }
                (AccountMatch::Exactly(wanted), _) => {
                    format!("the rule is for account {wanted:?} only")
                }
                _ => "the rule is for signed-in accounts; the caller is anonymous".to_owned(),
            },
            Skip::Group => format!(
                "the rule needs group {:?}; the caller's groups are {:?}",
                self.group.as_deref().unwrap_or_default(),
                asker.groups
            ),
            Skip::Type => format!("the rule is for type {:?}", self.resource_type),
            Skip::Name => match asker.expansion {
                Some(Ok(account)) if self.name.uses_account() => format!(
                    "{name:?} does not match {:?} (with ${{account}} = {account:?})",
                    self.spec.name
                ),
                _ => format!("{name:?} does not match {:?}", self.spec.name),
            },
            Skip::AccountNotExpandable(reason) => format!(
                "the name pattern {:?} uses ${{account}}, which this account cannot stand for: {reason}",
                self.spec.name
            ),
            Skip::Tag => match write {
                Some(ManifestWrite::Tag(tag)) => format!(
                    "tag {tag:?} matches none of the rule's tags {:?}",
                    self.spec.tags.as_deref().unwrap_or_default()
                ),
                _ => "the write's tag matches none of the rule's tags".to_owned(),
            },
            Skip::Digest => {
                "a manifest written by digest needs \"digests\": true in a rule with \"tags\""
                    .to_owned()
            }
        }
    }
}

/// Compiles `tags`/`digests`. Tag patterns use tag characters and `*` only, so that a
/// pattern cannot mean something a tag could never be.
fn compile_references(rule: usize, spec: &RuleSpec) -> Result<ReferenceCondition, AclError> {
    let digests = spec.digests.unwrap_or(false);
    let Some(patterns) = &spec.tags else {
        return match spec.digests {
            None => Ok(ReferenceCondition::Any),
            Some(true) => Ok(ReferenceCondition::Only {
                tags: Vec::new(),
                digests: true,
            }),
            Some(false) => Err(AclError::UselessReferenceCondition {
                rule,
                problem:
                    "\"digests\": false without \"tags\" matches no manifest write; leave it out",
            }),
        };
    };
    if patterns.is_empty() {
        return Err(AclError::UselessReferenceCondition {
            rule,
            problem: "\"tags\" is empty, so no tag could match; leave it out to match every tag",
        });
    }
    let tags = patterns
        .iter()
        .map(|pattern| {
            let valid = !pattern.is_empty()
                && pattern.len() <= 128
                && !pattern.starts_with(['.', '-'])
                && !pattern.contains("**")
                && pattern
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '*'));
            valid
                .then(|| NamePattern::compile(pattern).ok())
                .flatten()
                .ok_or_else(|| AclError::InvalidTagPattern {
                    rule,
                    pattern: pattern.clone(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ReferenceCondition::Only { tags, digests })
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

    let references = compile_references(rule, spec)?;
    if !matches!(references, ReferenceCondition::Any) && spec.resource_type != "repository" {
        return Err(AclError::UselessReferenceCondition {
            rule,
            problem: "\"tags\" and \"digests\" apply to repositories only",
        });
    }

    Ok(Rule {
        spec: spec.clone(),
        account,
        group: spec.group.clone(),
        resource_type: spec.resource_type.clone(),
        name,
        references,
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
        // Glob characters inside an account name never act as globs: such a name is not
        // a path component, so it never stands for ${account} at all.
        assert_eq!(repo(&acl, &user("*", NONE), "alice/app"), "");
        assert_eq!(repo(&acl, &user("*", NONE), "*/app"), "");
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

    /// Issue 8 item 5: names that are not one path component never expand ${account}.
    #[test]
    fn account_names_that_escape_their_namespace_never_expand() {
        let acl = acl(r#"[
            { "account": "*", "name": "${account}/**", "actions": ["pull", "push"] },
            { "account": "*", "actions": ["pull"] }
        ]"#);
        let cases = [
            // (account, repository, expected): the placeholder rule is skipped, the next
            // rule (any signed-in account: pull) decides.
            ("alice/team", "alice/team/app", "pull"),
            ("alice/team", "alice/app", "pull"),
            ("..", "../app", "pull"),
            (".", "./app", "pull"),
            ("Alice", "Alice/app", "pull"),
            ("a@example.org", "a@example.org/app", "pull"),
            ("alice/", "alice//app", "pull"),
            ("-alice", "-alice/app", "pull"),
            // Valid components still own their namespace.
            ("alice", "alice/app", "pull,push"),
            ("ci-bot.2", "ci-bot.2/x/y", "pull,push"),
            ("a__b", "a__b/app", "pull,push"),
        ];
        for (account, name, expected) in cases {
            assert_eq!(
                repo(&acl, &user(account, NONE), name),
                expected,
                "{account:?} on {name:?}"
            );
        }
        // Exact-name rules do not expand anything, so they still match such names.
        let exact = super::tests::acl(
            r#"[{ "account": "alice/team", "name": "shared", "actions": ["pull"] }]"#,
        );
        assert_eq!(repo(&exact, &user("alice/team", NONE), "shared"), "pull");
    }

    #[test]
    fn account_name_parse_explains_refusals() {
        assert_eq!(AccountName::parse("alice").unwrap().as_str(), "alice");
        assert_eq!(
            AccountName::parse("ci-bot.2").unwrap().to_string(),
            "ci-bot.2"
        );
        assert_eq!(AccountName::parse(""), Err(AccountNameError::Empty));
        assert!(matches!(
            AccountName::parse(&"a".repeat(256)),
            Err(AccountNameError::TooLong { length: 256 })
        ));
        assert!(AccountName::parse(&"a".repeat(255)).is_ok());
        for (name, consequence) in [
            ("alice/team", "another namespace"),
            ("..", "relative path"),
            (".", "relative path"),
            ("a*", "pattern"),
            ("${account}", "pattern"),
            ("Alice", "registry refuses"),
            ("a b", "registry refuses"),
            ("a:b", "registry refuses"),
            ("a\nb", "registry refuses"),
            ("_a", "registry refuses"),
            ("a.", "registry refuses"),
            ("a..b", "registry refuses"),
        ] {
            let message = AccountName::parse(name).unwrap_err().to_string();
            assert!(message.contains(consequence), "{name:?}: {message}");
        }
    }

    /// Issue 12 part 3, the issue's own example: anyone in `ci` may push `app/**` by
    /// digest and `sha-*` tags; only `release-managers` may push or delete `v*` and
    /// `latest`.
    #[test]
    fn tag_rules_decide_manifest_writes_by_what_they_name() {
        let acl = acl(r#"[
            { "group": "release-managers", "name": "app/**", "tags": ["v*", "latest"], "digests": true, "actions": ["pull", "push", "delete"] },
            { "group": "ci", "name": "app/**", "tags": ["sha-*"], "digests": true, "actions": ["pull", "push"] },
            { "account": "*", "name": "app/**", "actions": ["pull"] }
        ]"#);
        assert!(acl.has_reference_rules());
        let ci = vec!["ci".to_owned()];
        let releasers = vec!["release-managers".to_owned()];
        let (bot, rm, joe) = (user("bot", &ci), user("rm", &releasers), user("joe", NONE));
        let write = |subject: &Subject, write| {
            let allowed: Vec<String> = acl
                .allowed_for_write(subject, "app/web", write)
                .into_iter()
                .collect();
            allowed.join(",")
        };
        let cases = [
            (&bot, ManifestWrite::Tag("sha-3f1c"), "pull,push"),
            (&bot, ManifestWrite::Digest, "pull,push"),
            (&bot, ManifestWrite::Tag("v1.2"), "pull"),
            (&bot, ManifestWrite::Tag("latest"), "pull"),
            (&bot, ManifestWrite::Tag("sha"), "pull"),
            (&rm, ManifestWrite::Tag("v1.2"), "delete,pull,push"),
            (&rm, ManifestWrite::Tag("latest"), "delete,pull,push"),
            (&rm, ManifestWrite::Digest, "delete,pull,push"),
            (&rm, ManifestWrite::Tag("sha-1"), "pull"),
            (&rm, ManifestWrite::Tag("latest2"), "pull"),
            (&joe, ManifestWrite::Tag("v1"), "pull"),
            (&joe, ManifestWrite::Digest, "pull"),
        ];
        for (subject, written, expected) in cases {
            assert_eq!(write(subject, written), expected, "{subject:?} {written:?}");
        }
        // Everything else ignores the conditions: the token for a push carries push for
        // ci (blob uploads need it), and /auth checks the tag when the manifest comes.
        assert_eq!(repo(&acl, &bot, "app/web"), "pull,push");
        assert_eq!(repo(&acl, &rm, "app/web"), "delete,pull,push");
        assert_eq!(
            grant(&acl, &bot, "repository:app/web:pull,push,delete"),
            ["repository:app/web:pull,push"]
        );
    }

    #[test]
    fn tag_conditions_combine_like_other_conditions() {
        let acl = acl(r#"[
            { "name": "app/**", "tags": ["release-*"], "actions": [] },
            { "name": "app/**", "digests": true, "actions": ["pull"] },
            { "account": "*", "actions": ["pull", "push"] }
        ]"#);
        let joe = user("joe", NONE);
        let allowed = |write| {
            acl.allowed_for_write(&joe, "app/x", write)
                .into_iter()
                .collect::<Vec<_>>()
                .join(",")
        };
        // An explicit deny by tag stops the search for that tag only.
        assert_eq!(allowed(ManifestWrite::Tag("release-1")), "");
        assert_eq!(allowed(ManifestWrite::Tag("dev")), "pull,push");
        // `digests` alone: only writes by digest; a tag write skips the rule.
        assert_eq!(allowed(ManifestWrite::Digest), "pull");
        let plain =
            Acl::compile(&[serde_json::from_str(r#"{ "actions": ["pull"] }"#).unwrap()]).unwrap();
        assert!(!plain.has_reference_rules());
    }

    #[test]
    fn bad_tag_conditions_are_refused_with_the_rule_named() {
        for (json, expected) in [
            (r#"[{ "tags": [], "actions": ["pull"] }]"#, "is empty"),
            (r#"[{ "digests": false, "actions": ["pull"] }]"#, "digests"),
            (r#"[{ "tags": [""], "actions": ["pull"] }]"#, "tag pattern"),
            (
                r#"[{ "tags": ["v/1"], "actions": ["pull"] }]"#,
                "tag pattern",
            ),
            (
                r#"[{ "tags": ["-x"], "actions": ["pull"] }]"#,
                "tag pattern",
            ),
            (
                r#"[{ "tags": ["v**"], "actions": ["pull"] }]"#,
                "tag pattern",
            ),
            (
                r#"[{ "tags": ["${account}"], "actions": ["pull"] }]"#,
                "tag pattern",
            ),
            (
                r#"[{ "type": "registry", "tags": ["v*"], "actions": ["pull"] }]"#,
                "repositories only",
            ),
        ] {
            let message = compile_error(json).to_string();
            assert!(
                message.starts_with("ACL rule 1") && message.contains(expected),
                "{json}: {message}"
            );
        }
        // Round trip: the new fields are written only when set.
        let spec: RuleSpec =
            serde_json::from_str(r#"{"tags":["v*"],"digests":true,"actions":["push"]}"#).unwrap();
        let text = serde_json::to_string(&spec).unwrap();
        assert!(text.contains("\"tags\":[\"v*\"]") && text.contains("\"digests\":true"));
        let plain: RuleSpec = serde_json::from_str(r#"{"actions":["pull"]}"#).unwrap();
        assert!(!serde_json::to_string(&plain).unwrap().contains("tags"));
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
    fn action_sets_hold_any_name_and_compare_by_content() {
        let odd = Actions::from_listed(["vendor", "push", "pull", "vendor", "audit"]);
        let same = Actions::from_listed(["pull", "audit", "push", "vendor"]);
        assert_eq!(odd, same, "order and repeats do not matter");
        assert_eq!(odd.to_set(), set(&["audit", "pull", "push", "vendor"]));
        assert!(odd.covers(&set(&["vendor", "pull"])));
        assert!(!odd.covers(&set(&["delete"])));
        assert!(!odd.covers(&set(&["other"])));
        assert_eq!(
            odd.intersect(&set(&["audit", "delete", "push"])),
            set(&["audit", "push"])
        );
        let nothing = Actions::from_listed([]);
        assert_eq!(nothing, NOTHING);
        assert!(nothing.covers(&set(&[])));
        assert!(!nothing.covers(&set(&["pull"])));
        assert!(nothing.to_set().is_empty());
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
