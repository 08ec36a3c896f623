//! Properties of routing: method + original URI → required access.

use proptest::prelude::*;
use proptest::sample::{select, Index};
use regauth::route::{required_access, RouteError};
use regauth::scope::ResourceScope;

use super::*;

pub(crate) fn digest() -> impl Strategy<Value = String> {
    let other = (
        "[a-z0-9]{1,6}([+._-][a-z0-9]{1,4}){0,2}",
        "[a-zA-Z0-9=_-]{1,20}",
    )
        .prop_filter(
            "sha256/384/512 need their exact hex length",
            |(algorithm, _)| !matches!(algorithm.as_str(), "sha256" | "sha384" | "sha512"),
        )
        .prop_map(|(algorithm, encoded)| format!("{algorithm}:{encoded}"));
    prop_oneof![
        "[0-9a-f]{64}".prop_map(|hex| format!("sha256:{hex}")),
        "[0-9a-f]{96}".prop_map(|hex| format!("sha384:{hex}")),
        "[0-9a-f]{128}".prop_map(|hex| format!("sha512:{hex}")),
        other,
    ]
}

/// (prefix, suffix) around the repository name, for every endpoint, with an optional
/// query that carries no `from`, encoded as clients encode it (valid `%XX` escapes of
/// printable characters; an invalid escape or a control character is refused).
pub(crate) fn endpoint() -> impl Strategy<Value = (&'static str, String)> {
    let tag = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
    let upload_id = "[A-Za-z0-9_=-][A-Za-z0-9_.=-]{0,30}";
    let suffix = prop_oneof![
        Just(("/v2/", "/tags/list".to_owned())),
        tag.prop_map(|tag| ("/v2/", format!("/manifests/{tag}"))),
        digest().prop_map(|digest| ("/v2/", format!("/manifests/{digest}"))),
        digest().prop_map(|digest| ("/v2/", format!("/blobs/{digest}"))),
        Just(("/v2/", "/blobs/uploads/".to_owned())),
        Just(("/v2/", "/blobs/uploads".to_owned())),
        upload_id.prop_map(|id| ("/v2/", format!("/blobs/uploads/{id}"))),
        digest().prop_map(|digest| ("/v2/", format!("/referrers/{digest}"))),
        digest().prop_map(|digest| ("/extensions/v2/", format!("/signatures/{digest}"))),
    ];
    let query = prop::option::of((
        select(&["n", "last", "digest", "_state"][..]),
        "([a-zA-Z0-9]|%[2-6][0-9A-F]){0,8}",
    ));
    (suffix, query).prop_map(|((prefix, suffix), query)| match query {
        Some((key, value)) => (prefix, format!("{suffix}?{key}={value}")),
        None => (prefix, suffix),
    })
}

const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

/// The documented table: GET/HEAD → pull; POST/PUT/PATCH → pull+push; DELETE → delete.
pub(crate) fn documented_actions(method: &str) -> &'static [&'static str] {
    match method {
        "GET" | "HEAD" => &["pull"],
        "DELETE" => &["delete"],
        _ => &["pull", "push"],
    }
}

/// A `%`, a backslash, `//` or a `..` segment anywhere in the path.
pub(crate) fn has_hazard(uri: &str) -> bool {
    let path = uri.split_once('?').map_or(uri, |(path, _)| path);
    path.contains(['%', '\\'])
        || path.contains("//")
        || path.split('/').any(|segment| segment == "..")
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_requests_never_panic_and_hazards_are_refused(
        method in prop_oneof![select(&METHODS[..]).prop_map(str::to_owned), any::<String>()],
        uri in prop_oneof![
            any::<String>(),
            "(/v2/|/extensions/v2/|/)[a-z0-9/._:%=+?&#\\\\-]{0,60}",
        ],
    ) {
        let result = required_access(&method, &uri);
        prop_assert!(!has_hazard(&uri) || result.is_err(), "{} {:?} gave {:?}", method, uri, result);
    }

    #[test]
    fn a_hazard_in_a_valid_path_is_refused_for_what_it_is(
        name in repository_name(),
        (prefix, suffix) in endpoint(),
        method in select(&METHODS[..]),
        hazard in select(&["//", "/../", "\\", "%", "%2f", "%2e%2e"][..]),
        at in any::<Index>(),
    ) {
        let uri = format!("{prefix}{name}{suffix}");
        let path_len = uri.find('?').unwrap_or(uri.len());
        // Anywhere after the `/v2/` prefix (all ASCII, so any index is a char boundary).
        let at = prefix.len() + at.index(path_len - prefix.len() + 1);
        let tampered = format!("{}{hazard}{}", &uri[..at], &uri[at..]);
        let tampered_path = &tampered[..path_len + hazard.len()];
        prop_assert!(has_hazard(&tampered), "{:?}", tampered);
        // Refused for the hazard itself, not by the name or endpoint grammar that happens to
        // reject it as well: those checks are not written to catch it.
        let result = required_access(method, &tampered);
        let refused_for_it = match (hazard, &result) {
            ("\\", Err(RouteError::ForbiddenCharacter { character, .. })) => *character == '\\',
            ("%" | "%2f" | "%2e%2e", Err(RouteError::ForbiddenCharacter { character, .. })) => *character == '%',
            ("//", Err(RouteError::EmptySegment { .. })) => true,
            ("/../", Err(RouteError::EmptySegment { .. })) => tampered_path.contains("//"),
            ("/../", Err(RouteError::DotSegment { .. })) => !tampered_path.contains("//"),
            _ => false,
        };
        prop_assert!(refused_for_it, "{} {:?} gave {:?}", method, tampered, result);
    }

    #[test]
    fn every_endpoint_needs_exactly_the_documented_access(
        name in repository_name(),
        (prefix, suffix) in endpoint(),
        method in select(&METHODS[..]),
    ) {
        let uri = format!("{prefix}{name}{suffix}");
        let expected = vec![ResourceScope::repository(&name, documented_actions(method))];
        prop_assert_eq!(required_access(method, &uri), Ok(expected), "{} {}", method, uri);
    }

    #[test]
    fn a_blob_mount_or_any_from_parameter_adds_pull_on_the_source(
        name in repository_name(),
        other in repository_name(),
        same in prop::bool::weighted(0.2),
        encode in any::<bool>(),
        (method, prefix, rest) in prop_oneof![
            (any::<bool>(), digest()).prop_map(|(slash, digest)| {
                let slash = if slash { "/" } else { "" };
                ("POST", "/v2/", format!("/blobs/uploads{slash}?mount={digest}"))
            }),
            // The registry reads `from` on any request; so does the sidecar.
            (select(&METHODS[..]), endpoint())
                .prop_map(|(method, (prefix, suffix))| (method, prefix, suffix)),
        ],
    ) {
        let from = if same { name.clone() } else { other };
        let written = if encode { from.replace('/', "%2F").replace(':', "%3A") } else { from.clone() };
        let separator = if rest.contains('?') { '&' } else { '?' };
        let uri = format!("{prefix}{name}{rest}{separator}from={written}");
        let mut target = ResourceScope::repository(&name, documented_actions(method));
        let mut sources = Vec::new();
        if from == name {
            target.actions.insert("pull".to_owned());
        } else {
            sources.push(ResourceScope::repository(&from, &["pull"]));
        }
        let expected: Vec<ResourceScope> = std::iter::once(target).chain(sources).collect();
        prop_assert_eq!(required_access(method, &uri), Ok(expected), "{} {}", method, uri);
    }
}
