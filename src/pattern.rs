//! Name patterns for ACL rules: the glob dialect and its matcher.
//!
//! `*` matches any run of characters within one path segment (never `/`), `**` matches any
//! run including `/` and the empty run, and `${account}` stands for the subject's account
//! name taken literally. So `public/**` matches `public/x` and `public/a/b` but not `public`
//! itself, and `**` matches every name. Matching is a dynamic-programming pass, linear in the
//! name for each pattern piece, with no backtracking.
//!
//! Which rule a pattern belongs to, and what a match grants, is [`crate::acl`]'s business.

/// The placeholder replaced by the subject's account name.
const ACCOUNT_PLACEHOLDER: &str = "${account}";

/// What is wrong with a name pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternProblem {
    /// `"name": ""`.
    #[error("it is empty; use \"**\" to match every name")]
    Empty,
    /// Three or more `*` in a row.
    #[error("\"***\" has no meaning; use \"*\" within a segment or \"**\" across segments")]
    TooManyStars,
    /// A `$` that does not start `${account}`.
    #[error("the only placeholder is ${{account}}")]
    UnknownPlaceholder,
    /// A character from other glob or regex dialects, or one no resource name contains.
    #[error("character {character:?} is not supported; patterns use literal text, \"*\", \"**\" and ${{account}}")]
    UnsupportedCharacter {
        /// The rejected character.
        character: char,
    },
}

/// A compiled name pattern: the pattern text cut into pieces, matched left to right.
#[derive(Debug, Clone)]
pub(crate) struct NamePattern {
    pieces: Vec<PatternPiece>,
}

#[derive(Debug, Clone)]
enum PatternPiece {
    Literal(String),
    Account,
    /// `*`: any run without `/`.
    SegmentWildcard,
    /// `**`: any run, `/` included.
    PathWildcard,
}

impl NamePattern {
    /// Compiles pattern text, refusing anything outside the dialect rather than guessing.
    pub(crate) fn compile(pattern: &str) -> Result<NamePattern, PatternProblem> {
        if pattern.is_empty() {
            return Err(PatternProblem::Empty);
        }
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = pattern;
        while let Some(character) = rest.chars().next() {
            let (piece, after) = if let Some(after) = rest.strip_prefix(ACCOUNT_PLACEHOLDER) {
                (PatternPiece::Account, after)
            } else if rest.starts_with("***") {
                return Err(PatternProblem::TooManyStars);
            } else if let Some(after) = rest.strip_prefix("**") {
                (PatternPiece::PathWildcard, after)
            } else if let Some(after) = rest.strip_prefix('*') {
                (PatternPiece::SegmentWildcard, after)
            } else if character == '$' {
                return Err(PatternProblem::UnknownPlaceholder);
            } else if matches!(character, '?' | '[' | ']' | '{' | '}' | '\\')
                || !(character.is_ascii_graphic())
            {
                return Err(PatternProblem::UnsupportedCharacter { character });
            } else {
                literal.push(character);
                let mut chars = rest.chars();
                chars.next();
                rest = chars.as_str();
                continue;
            };
            if !literal.is_empty() {
                pieces.push(PatternPiece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
            rest = after;
        }
        if !literal.is_empty() {
            pieces.push(PatternPiece::Literal(literal));
        }
        Ok(NamePattern { pieces })
    }

    /// Whether the pattern contains `${account}`, and so can never match an anonymous subject.
    pub(crate) fn uses_account(&self) -> bool {
        self.pieces
            .iter()
            .any(|piece| matches!(piece, PatternPiece::Account))
    }

    /// Runs the pattern over `name` keeping, for every prefix length, whether the pieces
    /// seen so far can match exactly that prefix. Each piece costs one pass over the name,
    /// so pathological patterns stay cheap.
    pub(crate) fn matches(&self, name: &str, account: Option<&str>) -> bool {
        let name = name.as_bytes();
        let mut reachable = vec![false; name.len() + 1];
        let mut next = vec![false; name.len() + 1];
        if let Some(start) = reachable.first_mut() {
            *start = true;
        }
        for piece in &self.pieces {
            match piece {
                PatternPiece::Literal(text) => {
                    step_literal(text.as_bytes(), name, &reachable, &mut next);
                    std::mem::swap(&mut reachable, &mut next);
                }
                PatternPiece::Account => {
                    let Some(account) = account else {
                        return false;
                    };
                    step_literal(account.as_bytes(), name, &reachable, &mut next);
                    std::mem::swap(&mut reachable, &mut next);
                }
                PatternPiece::SegmentWildcard => {
                    let mut open = false;
                    for (position, (out, &was)) in next.iter_mut().zip(reachable.iter()).enumerate()
                    {
                        open |= was;
                        *out = open;
                        // The wildcard may not swallow the '/' that follows this position.
                        if name.get(position) == Some(&b'/') {
                            open = false;
                        }
                    }
                    std::mem::swap(&mut reachable, &mut next);
                }
                PatternPiece::PathWildcard => {
                    let mut open = false;
                    for position in reachable.iter_mut() {
                        open |= *position;
                        *position = open;
                    }
                }
            }
            if !reachable.contains(&true) {
                return false;
            }
        }
        reachable.last().copied().unwrap_or(false)
    }
}

/// Extends every reachable prefix by `literal` where the name continues with it.
fn step_literal(literal: &[u8], name: &[u8], reachable: &[bool], next: &mut [bool]) {
    next.fill(false);
    for (start, _) in reachable.iter().enumerate().filter(|(_, was)| **was) {
        let continues = name
            .get(start..)
            .is_some_and(|rest| rest.starts_with(literal));
        if let Some(slot) = next.get_mut(start + literal.len()).filter(|_| continues) {
            *slot = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_semantics() {
        let cases = [
            ("public/**", "public/x", true),
            ("public/**", "public/a/b", true),
            ("public/**", "public", false),
            ("public/**", "publicity/x", false),
            ("public/*", "public/x", true),
            ("public/*", "public/a/b", false),
            ("*/app", "team/app", true),
            ("*/app", "a/b/app", false),
            ("**/app", "a/b/app", true),
            ("**/app", "app", false),
            ("**", "anything/at/all", true),
            ("*", "top", true),
            ("*", "a/b", false),
            ("team-*", "team-x", true),
            ("team-*", "team-", true),
            ("a/**/z", "a/z", false),
            ("a/**/z", "a/b/z", true),
            ("a/*/z", "a//z", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("exact", "Exact", false),
            ("host:5000/**", "host:5000/app", true),
        ];
        for (pattern, name, expected) in cases {
            let compiled = NamePattern::compile(pattern).unwrap();
            assert_eq!(
                compiled.matches(name, None),
                expected,
                "{pattern:?} vs {name:?}"
            );
        }
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let pattern = NamePattern::compile("*a*a*a*a*a*a*a*a*a*a*a*a*b").unwrap();
        let name = "a".repeat(100_000);
        let started = std::time::Instant::now();
        assert!(!pattern.matches(&name, None));
        let double = NamePattern::compile("**a**a**a**a**a**a**a**a**a**a**b").unwrap();
        assert!(!double.matches(&name, None));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert!(pattern.matches(&format!("{name}b"), None));
    }

    /// How each bad pattern is reported inside an ACL rule is checked in `acl`'s tests.
    #[test]
    fn bad_patterns_are_rejected() {
        let cases = [
            ("", PatternProblem::Empty),
            ("a/***", PatternProblem::TooManyStars),
            ("${user}/**", PatternProblem::UnknownPlaceholder),
            ("$account/**", PatternProblem::UnknownPlaceholder),
            (
                "a/?",
                PatternProblem::UnsupportedCharacter { character: '?' },
            ),
            (
                "a/[bc]",
                PatternProblem::UnsupportedCharacter { character: '[' },
            ),
            (
                "{a,b}",
                PatternProblem::UnsupportedCharacter { character: '{' },
            ),
            (
                "a b",
                PatternProblem::UnsupportedCharacter { character: ' ' },
            ),
            ("é", PatternProblem::UnsupportedCharacter { character: 'é' }),
        ];
        for (pattern, problem) in cases {
            assert_eq!(
                NamePattern::compile(pattern).err(),
                Some(problem),
                "{pattern:?}"
            );
        }
        let message = NamePattern::compile("a/[b]")
            .err()
            .map(|problem| problem.to_string())
            .unwrap_or_default();
        assert!(message.contains("'['"), "{message}");
    }
}
