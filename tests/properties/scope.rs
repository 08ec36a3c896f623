//! Properties of the scope grammar, and the repository-name strategies the other files share.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::sample::{select, subsequence, Index};
use regauth::scope::{parse_scope, parse_scopes, validate_repository_name, ResourceScope};

use super::*;

/// A path component, now and then one of the words the route table uses as an endpoint
/// suffix, which names may legally contain.
pub(crate) fn path_component() -> impl Strategy<Value = String> {
    const WORDS: [&str; 7] = [
        "blobs",
        "uploads",
        "manifests",
        "tags",
        "list",
        "referrers",
        "v2",
    ];
    prop_oneof![
        4 => "[a-z0-9]{1,4}((\\.|_|__|-{1,3})[a-z0-9]{1,4}){0,2}",
        1 => select(&WORDS[..]).prop_map(str::to_owned),
    ]
}

/// `host[:port]`: dot-separated labels of letters, digits and inner dashes.
pub(crate) fn domain() -> impl Strategy<Value = String> {
    concat!(
        "[a-zA-Z0-9]([a-zA-Z0-9-]{0,3}[a-zA-Z0-9])?",
        "(\\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,3}[a-zA-Z0-9])?){0,2}",
        "(:[0-9]{1,5})?",
    )
}

/// A repository name with 1 to `max_components` path components and an optional domain.
pub(crate) fn repository_name_of(max_components: usize) -> impl Strategy<Value = String> {
    let components = prop::collection::vec(path_component(), 1..=max_components);
    (prop::option::of(domain()), components).prop_map(|(domain, components)| {
        let path = components.join("/");
        domain.map_or_else(|| path.clone(), |domain| format!("{domain}/{path}"))
    })
}

/// Valid names well under the 255-byte limit.
pub(crate) fn repository_name() -> impl Strategy<Value = String> {
    repository_name_of(3)
}

pub(crate) fn action_set(min: usize) -> impl Strategy<Value = BTreeSet<String>> {
    subsequence(&["*", "delete", "pull", "push"][..], min..=4)
        .prop_map(|actions| actions.into_iter().map(str::to_owned).collect())
}

pub(crate) fn resource_scope() -> impl Strategy<Value = ResourceScope> {
    let resource_type = prop_oneof![
        Just("repository".to_owned()),
        Just("registry".to_owned()),
        "[a-z0-9]{1,8}"
    ];
    let class = prop::option::of("[a-z0-9]{1,6}");
    (resource_type, class, repository_name(), action_set(1)).prop_map(
        |(resource_type, class, name, actions)| ResourceScope {
            resource_type,
            class,
            name,
            actions,
        },
    )
}

/// Scopes drawn from a small pool of resources, so that lists repeat resources.
pub(crate) fn colliding_scope() -> impl Strategy<Value = ResourceScope> {
    let resource_type = select(&["repository", "registry"][..]);
    let class = prop::option::of(Just("plugin"));
    let name = select(&["a", "b/c", "localhost:5000/a"][..]);
    (resource_type, class, name, action_set(1)).prop_map(|(resource_type, class, name, actions)| {
        ResourceScope {
            resource_type: resource_type.to_owned(),
            class: class.map(str::to_owned),
            name: name.to_owned(),
            actions,
        }
    })
}

/// Anything, plus text close enough to the grammar to get past the first checks.
pub(crate) fn scope_like_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9:/._()*, -]{0,40}",
        "[a-z()]{1,12}:[a-zA-Z0-9:/._-]{0,300}:[a-z*,]{0,12}",
        // A valid scope with one character inserted.
        (resource_scope(), any::<Index>(), any::<char>()).prop_map(|(scope, at, extra)| {
            let mut text = scope.to_string();
            text.insert(at.index(text.len() + 1), extra); // scopes are ASCII: any index is a boundary
            text
        }),
    ]
}

/// What `parse_scopes` promises: one scope per (type, class, name), actions united, sorted.
pub(crate) fn united(scopes: &[ResourceScope]) -> Vec<ResourceScope> {
    let mut merged: BTreeMap<(String, Option<String>, String), BTreeSet<String>> = BTreeMap::new();
    for scope in scopes {
        let key = (
            scope.resource_type.clone(),
            scope.class.clone(),
            scope.name.clone(),
        );
        merged
            .entry(key)
            .or_default()
            .extend(scope.actions.iter().cloned());
    }
    merged
        .into_iter()
        .map(|((resource_type, class, name), actions)| ResourceScope {
            resource_type,
            class,
            name,
            actions,
        })
        .collect()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn scope_display_round_trips(scope in resource_scope()) {
        prop_assert_eq!(parse_scope(&scope.to_string()), Ok(scope));
    }

    #[test]
    fn parse_scopes_unites_per_resource_whatever_the_order_or_repetition(
        (scopes, shuffled) in prop::collection::vec(colliding_scope(), 1..8)
            .prop_flat_map(|scopes| (Just(scopes.clone()), Just(scopes).prop_shuffle())),
    ) {
        let expected = Ok(united(&scopes));
        let texts: Vec<String> = scopes.iter().map(ToString::to_string).collect();
        prop_assert_eq!(&parse_scopes(texts.iter().map(String::as_str)), &expected);
        let reordered: Vec<String> = shuffled.iter().map(ToString::to_string).collect();
        prop_assert_eq!(&parse_scopes(reordered.iter().map(String::as_str)), &expected);
        // Every scope twice: once as its own value, once inside one space-joined value.
        let joined = texts.join("  ");
        let doubled = texts.iter().map(String::as_str).chain([joined.as_str()]);
        prop_assert_eq!(&parse_scopes(doubled), &expected);
        // One piece per action.
        let single: Vec<String> = scopes
            .iter()
            .flat_map(|scope| scope.actions.iter().map(move |action| ResourceScope {
                actions: BTreeSet::from([action.clone()]),
                ..scope.clone()
            }))
            .map(|scope| scope.to_string())
            .collect();
        prop_assert_eq!(&parse_scopes(single.iter().map(String::as_str)), &expected);
    }

    #[test]
    fn arbitrary_scope_text_never_panics_and_accepted_scopes_are_sane(
        texts in prop::collection::vec(scope_like_text(), 0..4),
    ) {
        for text in &texts {
            if let Ok(scope) = parse_scope(text) {
                prop_assert!(scope.name.len() <= 255, "{:?}", text);
                prop_assert_eq!(parse_scope(&scope.to_string()), Ok(scope));
            }
            if validate_repository_name(text).is_ok() {
                prop_assert!(text.len() <= 255, "{:?}", text);
            }
        }
        let _ = parse_scopes(texts.iter().map(String::as_str));
    }

    #[test]
    fn valid_names_are_accepted_exactly_up_to_255_bytes(
        name in prop_oneof![
            repository_name_of(100),
            // Right around the limit: a short name whose last component is padded out.
            (repository_name(), 250usize..=260)
                .prop_map(|(name, length)| format!("{name}{}", "a".repeat(length - name.len()))),
        ],
    ) {
        let short_enough = name.len() <= 255;
        prop_assert_eq!(validate_repository_name(&name).is_ok(), short_enough, "{}", name.len());
        let scope = format!("repository:{name}:pull");
        prop_assert_eq!(parse_scope(&scope).is_ok(), short_enough);
    }
}
