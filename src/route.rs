//! Which access a registry request needs: (method, original URI) → required scopes.
//!
//! Owns the map from Distribution 2.8 / OCI endpoints (and Pulp's signature extension) to
//! the access records the registry itself would demand, so the nginx `auth_request` sidecar
//! can decide before the request reaches the registry. Like the registry, the actions depend
//! on the method only: GET/HEAD → `pull`; POST/PUT/PATCH → `pull`+`push`; DELETE → `delete`.
//!
//! Anything unusual is denied, never guessed: percent-encoding, dot segments, empty
//! segments, backslashes, fragments, unknown endpoints and bad names all yield a
//! [`RouteError`], because a path the sidecar reads differently from the registry would let
//! a token for one repository reach another. The query is held to the same rule: it is
//! read with [`crate::query`], which refuses what parsers split or decode differently
//! (`;`, invalid escapes, bytes that are not UTF-8), and the parameters that change the
//! access needed (`from`, `mount`) may appear once only.

use std::collections::BTreeSet;

use crate::media_type::{self, FORM_MEDIA_TYPES};
use crate::query::{Pairs, QueryError};
use crate::scope::{self, ResourceScope, ScopeError};

/// Query parameters that change the access a request needs: a blob mount
/// (`mount` + `from`) also reads the `from` repository.
const ACCESS_PARAMETERS: [&str; 2] = ["from", "mount"];

/// Longest tag the reference grammar allows.
const TAG_MAX_LEN: usize = 128;

/// Why a request is refused outright. Every variant means "deny with 403": no token could
/// make the request acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// A method the registry API does not use (or a lower-case spelling).
    #[error("method {method:?} is not part of the registry API")]
    UnsupportedMethod {
        /// The rejected method.
        method: String,
    },
    /// A known method on an endpoint that only serves reads.
    #[error("method {method:?} is not allowed on {endpoint}; only GET and HEAD are")]
    ReadOnlyEndpoint {
        /// The rejected method.
        method: String,
        /// The endpoint, e.g. `/v2/_catalog`.
        endpoint: &'static str,
    },
    /// A character no registry request needs, which might make nginx, this sidecar and the
    /// registry read the path differently.
    #[error("the request target contains {character:?}: {reason}")]
    ForbiddenCharacter {
        /// The rejected character.
        character: char,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The path is outside the registry API.
    #[error("path {path:?} is not under /v2/ or /extensions/v2/")]
    NotRegistryPath {
        /// The rejected path (possibly shortened).
        path: String,
    },
    /// `//`, or a trailing `/` where the endpoint has none.
    #[error("path {path:?} has an empty segment (a doubled '/' or a trailing '/' the endpoint does not have)")]
    EmptySegment {
        /// The rejected path (possibly shortened).
        path: String,
    },
    /// A `.` or `..` segment.
    #[error("path {path:?} has a '.' or '..' segment")]
    DotSegment {
        /// The rejected path (possibly shortened).
        path: String,
    },
    /// The path fits no registry endpoint.
    #[error("path {path:?} is not a registry endpoint")]
    UnknownEndpoint {
        /// The rejected path (possibly shortened).
        path: String,
    },
    /// The repository name in the path breaks the reference grammar.
    #[error("{0}")]
    InvalidName(ScopeError),
    /// The manifest reference is neither a tag nor a digest.
    #[error("manifest reference {reference:?} is neither a tag ([A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}) nor a digest (algorithm:hex)")]
    InvalidReference {
        /// The rejected reference (possibly shortened).
        reference: String,
    },
    /// The digest in a blob, referrers or signatures path is malformed.
    #[error("{digest:?} is not a valid digest (algorithm:encoded, e.g. sha256 with 64 lower-case hex digits)")]
    InvalidDigest {
        /// The rejected digest (possibly shortened).
        digest: String,
    },
    /// The upload session id holds characters outside `[A-Za-z0-9_.=-]`.
    #[error("upload id {id:?} may only contain letters, digits, '_', '.', '=' and '-'")]
    InvalidUploadId {
        /// The rejected id (possibly shortened).
        id: String,
    },
    /// The `from` query parameter (blob mount source) is not a valid repository name.
    #[error("blob mount source ?from=: {0}")]
    InvalidMountSource(ScopeError),
    /// The query is one that parsers may read differently (see [`crate::query`]).
    #[error("query refused: {0}")]
    Query(QueryError),
    /// A write whose body is a form: the registry would read `mount`/`from`
    /// from it, and the sidecar only sees the URI.
    #[error("{media_type} bodies are refused on registry writes: the registry would read parameters from a body this check cannot see")]
    FormBody {
        /// The refused media type.
        media_type: &'static str,
    },
    /// A write whose `Content-Type` is not printable ASCII: what the
    /// registry would make of it cannot be told.
    #[error("a Content-Type that is not printable ASCII is refused on registry writes")]
    UnreadableContentType,
}

/// Refuses a write whose body is, or might be, a form. The registry reads
/// request parameters with Go's `FormValue`, which also parses form bodies
/// of POST, PUT and PATCH, so a blob mount's `from` could hide in a body the
/// sidecar never sees. Every `Content-Type` value counts, and one that is
/// not printable ASCII is refused too: Go might still read it as a form. No
/// registry client sends such bodies, so nothing real is lost.
pub fn refuse_form_body(method: &str, content_types: &[&[u8]]) -> Result<(), RouteError> {
    if !matches!(method, "POST" | "PUT" | "PATCH") {
        return Ok(());
    }
    for value in content_types {
        match media_type::media_type(value) {
            None => return Err(RouteError::UnreadableContentType),
            Some(found) => {
                if let Some(form) = FORM_MEDIA_TYPES.iter().find(|form| **form == found) {
                    return Err(RouteError::FormBody { media_type: form });
                }
            }
        }
    }
    Ok(())
}

/// The registry endpoints, told apart by their fixed suffix.
enum Endpoint<'a> {
    Catalog,
    TagList,
    Manifest(&'a str),
    Blob(&'a str),
    UploadStart,
    UploadSession(&'a str),
    Referrers(&'a str),
    Signatures(&'a str),
}

/// A manifest written or deleted (`PUT`/`DELETE /v2/<name>/manifests/<reference>`): the
/// one request whose URL names a tag, which tokens cannot carry, so ACL rules with `tags`
/// or `digests` are checked against it at request time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestWrite {
    /// The repository.
    pub name: String,
    /// What the URL names.
    pub reference: Reference,
}

/// A manifest reference from a request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A tag such as `latest`.
    Tag(String),
    /// A digest such as `sha256:...`.
    Digest(String),
}

impl ManifestWrite {
    /// The write as ACL rules see it.
    pub fn as_acl_write(&self) -> crate::acl::ManifestWrite<'_> {
        match &self.reference {
            Reference::Tag(tag) => crate::acl::ManifestWrite::Tag(tag),
            Reference::Digest(_) => crate::acl::ManifestWrite::Digest,
        }
    }
}

/// What a registry request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Required {
    /// The access, as [`required_access`] returns it.
    pub access: Vec<ResourceScope>,
    /// For a manifest `PUT` or `DELETE`, what it writes.
    pub manifest_write: Option<ManifestWrite>,
}

/// The access a registry request needs. An empty vec means any valid credential (the
/// `/v2/` base).
///
/// `original_uri` is nginx's `$request_uri`: the raw path plus an optional `?query`. Any
/// non-empty `from` query parameter on a repository endpoint adds `pull` on that repository,
/// as the registry does for cross-repository blob mounts.
pub fn required_access(method: &str, original_uri: &str) -> Result<Vec<ResourceScope>, RouteError> {
    classify(method, original_uri).map(|required| required.access)
}

/// Like [`required_access`], and also says what a manifest write writes.
pub fn classify(method: &str, original_uri: &str) -> Result<Required, RouteError> {
    let actions = actions_for_method(method)?;
    if let Some(character) = original_uri
        .chars()
        .find(|c| *c == '#' || c.is_whitespace() || c.is_control())
    {
        return Err(forbidden(character));
    }
    let (path, query) = match original_uri.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (original_uri, None),
    };
    if let Some(character) = path.chars().find(|c| !is_path_character(*c)) {
        return Err(forbidden(character));
    }
    let parameters = read_query(query)?;

    if path == "/v2" || path == "/v2/" {
        require_read_only(method, "the /v2/ base")?;
        return Ok(Required {
            access: Vec::new(),
            manifest_write: None,
        });
    }
    let (name_segments, endpoint) = if let Some(rest) = path.strip_prefix("/v2/") {
        let (segments, trailing_slash) = split_segments(path, rest)?;
        registry_endpoint(path, segments, trailing_slash)?
    } else if let Some(rest) = path.strip_prefix("/extensions/v2/") {
        let (segments, trailing_slash) = split_segments(path, rest)?;
        match (segments.as_slice(), trailing_slash) {
            ([name @ .., "signatures", digest], false) => {
                (name.to_vec(), Endpoint::Signatures(digest))
            }
            (_, true) => return Err(empty_segment(path)),
            _ => return Err(unknown_endpoint(path)),
        }
    } else {
        return Err(RouteError::NotRegistryPath {
            path: scope::excerpt(path),
        });
    };

    if matches!(endpoint, Endpoint::Catalog) {
        require_read_only(method, "/v2/_catalog")?;
        return Ok(Required {
            access: vec![ResourceScope {
                resource_type: "registry".to_owned(),
                class: None,
                name: "catalog".to_owned(),
                actions: BTreeSet::from(["*".to_owned()]),
            }],
            manifest_write: None,
        });
    }

    let name = name_segments.join("/");
    scope::validate_repository_name(&name).map_err(RouteError::InvalidName)?;
    check_endpoint_argument(&endpoint)?;

    let mut target = ResourceScope::repository(&name, actions);
    let mut source_scope = None;
    match mount_source(&parameters)? {
        // Mounting from the same repository still needs pull on it.
        Some(source) if source == name => {
            target.actions.insert("pull".to_owned());
        }
        Some(source) => source_scope = Some(ResourceScope::repository(&source, &["pull"])),
        None => {}
    }
    let mut access = vec![target];
    access.extend(source_scope);
    let manifest_write = match endpoint {
        Endpoint::Manifest(reference) if matches!(method, "PUT" | "DELETE") => {
            Some(ManifestWrite {
                reference: if is_digest(reference) {
                    Reference::Digest(reference.to_owned())
                } else {
                    Reference::Tag(reference.to_owned())
                },
                name,
            })
        }
        _ => None,
    };
    Ok(Required {
        access,
        manifest_write,
    })
}

fn actions_for_method(method: &str) -> Result<&'static [&'static str], RouteError> {
    match method {
        "GET" | "HEAD" => Ok(&["pull"]),
        "POST" | "PUT" | "PATCH" => Ok(&["pull", "push"]),
        "DELETE" => Ok(&["delete"]),
        _ => Err(RouteError::UnsupportedMethod {
            method: scope::excerpt(method),
        }),
    }
}

fn require_read_only(method: &str, endpoint: &'static str) -> Result<(), RouteError> {
    if matches!(method, "GET" | "HEAD") {
        Ok(())
    } else {
        Err(RouteError::ReadOnlyEndpoint {
            method: method.to_owned(),
            endpoint,
        })
    }
}

/// The characters of every path grammar in the API: names (`host:port/a.b_c-d`), tags,
/// digests (`sha256:...`, `+` and `=` included) and upload ids.
fn is_path_character(character: char) -> bool {
    character.is_ascii_alphanumeric()
        || matches!(character, '/' | '.' | '_' | '-' | ':' | '=' | '+')
}

/// RFC 3986 query characters, less `;`: what a client that encodes its parameters sends
/// (Go's `url.Values.Encode` escapes everything else). Characters outside the RFC, such as
/// `\`, `"`, `{` or `|`, are passed on or rejected differently by each server.
fn is_query_character(character: char) -> bool {
    character.is_ascii_alphanumeric()
        || matches!(
            character,
            '-' | '.'
                | '_'
                | '~'
                | '!'
                | '$'
                | '&'
                | '\''
                | '('
                | ')'
                | '*'
                | '+'
                | ','
                | '='
                | ':'
                | '@'
                | '/'
                | '?'
                | '%'
        )
}

/// Reads the query strictly: only RFC 3986 characters, decodable the same way by every
/// parser, no control characters once decoded, and `from`/`mount` at most once.
fn read_query(query: Option<&str>) -> Result<Pairs, RouteError> {
    let Some(query) = query else {
        return Ok(Pairs::default());
    };
    if let Some(character) = query.chars().find(|c| !is_query_character(*c)) {
        return Err(forbidden(character));
    }
    let parameters = Pairs::parse(query.as_bytes()).map_err(RouteError::Query)?;
    parameters
        .refuse_repeated(&ACCESS_PARAMETERS)
        .and_then(|()| parameters.refuse_control_characters(&[]))
        .map_err(RouteError::Query)?;
    Ok(parameters)
}

fn forbidden(character: char) -> RouteError {
    let reason = match character {
        '%' => "percent-encoding could hide '/' or '..' from this check; send the path unencoded",
        '\\' => "some servers read a backslash as '/'",
        '#' => "a fragment never belongs in a request",
        ';' => "Go up to 1.16 and older Python split parameters on ';' while newer Go drops them: the registry could read a parameter this check does not see",
        c if c.is_whitespace() || c.is_control() => "spaces and control characters are not allowed",
        _ => "no registry path contains it",
    };
    RouteError::ForbiddenCharacter { character, reason }
}

/// Splits the part after the prefix into segments, refusing empty and dot segments. A single
/// trailing `/` is reported separately because one endpoint (upload start) has it.
fn split_segments<'a>(path: &str, rest: &'a str) -> Result<(Vec<&'a str>, bool), RouteError> {
    let (body, trailing_slash) = match rest.strip_suffix('/') {
        Some(body) => (body, true),
        None => (rest, false),
    };
    let segments: Vec<&str> = body.split('/').collect();
    if segments.iter().any(|segment| segment.is_empty()) {
        return Err(empty_segment(path));
    }
    if segments
        .iter()
        .any(|segment| matches!(*segment, "." | ".."))
    {
        return Err(RouteError::DotSegment {
            path: scope::excerpt(path),
        });
    }
    Ok((segments, trailing_slash))
}

/// Finds the endpoint by its fixed suffix, so names may contain segments such as `blobs`:
/// `/v2/a/blobs/b/blobs/<digest>` is a blob of repository `a/blobs/b`. The suffixes differ
/// in a literal segment, so at most one arm can match a given path.
fn registry_endpoint<'a>(
    path: &str,
    segments: Vec<&'a str>,
    trailing_slash: bool,
) -> Result<(Vec<&'a str>, Endpoint<'a>), RouteError> {
    let found = match (segments.as_slice(), trailing_slash) {
        (["_catalog"], false) => (Vec::new(), Endpoint::Catalog),
        // The registry's route has the slash; without it the registry redirects. Both need
        // the same access.
        ([name @ .., "blobs", "uploads"], _) => (name.to_vec(), Endpoint::UploadStart),
        (_, true) => return Err(empty_segment(path)),
        ([name @ .., "tags", "list"], false) => (name.to_vec(), Endpoint::TagList),
        ([name @ .., "manifests", reference], false) => {
            (name.to_vec(), Endpoint::Manifest(reference))
        }
        ([name @ .., "blobs", "uploads", id], false) => {
            (name.to_vec(), Endpoint::UploadSession(id))
        }
        ([name @ .., "blobs", digest], false) => (name.to_vec(), Endpoint::Blob(digest)),
        ([name @ .., "referrers", digest], false) => (name.to_vec(), Endpoint::Referrers(digest)),
        _ => return Err(unknown_endpoint(path)),
    };
    Ok(found)
}

fn check_endpoint_argument(endpoint: &Endpoint) -> Result<(), RouteError> {
    match endpoint {
        Endpoint::Catalog | Endpoint::TagList | Endpoint::UploadStart => Ok(()),
        Endpoint::Manifest(reference) => {
            if is_tag(reference) || is_digest(reference) {
                Ok(())
            } else {
                Err(RouteError::InvalidReference {
                    reference: scope::excerpt(reference),
                })
            }
        }
        Endpoint::Blob(digest) | Endpoint::Referrers(digest) | Endpoint::Signatures(digest) => {
            if is_digest(digest) {
                Ok(())
            } else {
                Err(RouteError::InvalidDigest {
                    digest: scope::excerpt(digest),
                })
            }
        }
        Endpoint::UploadSession(id) => {
            let valid = !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '=' | '-'));
            if valid {
                Ok(())
            } else {
                Err(RouteError::InvalidUploadId {
                    id: scope::excerpt(id),
                })
            }
        }
    }
}

/// The `from` value of the query, validated, when present and non-empty (at most one:
/// [`read_query`] refused repeats).
fn mount_source(parameters: &Pairs) -> Result<Option<String>, RouteError> {
    match parameters.all("from").find(|value| !value.is_empty()) {
        Some(value) => {
            scope::validate_repository_name(value).map_err(RouteError::InvalidMountSource)?;
            Ok(Some(value.to_owned()))
        }
        None => Ok(None),
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_tag(text: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.len() <= TAG_MAX_LEN
        && text.chars().next().is_some_and(word)
        && text.chars().all(|c| word(c) || c == '.' || c == '-')
}

/// `[a-z0-9]+([+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+`, and for the algorithms the registry
/// knows, the exact lower-case hex length it will insist on anyway.
fn is_digest(text: &str) -> bool {
    let Some((algorithm, encoded)) = text.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm
        .split(['+', '.', '_', '-'])
        .all(scope::is_lower_alphanumeric);
    let encoded_ok = !encoded.is_empty()
        && encoded
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '=' | '_' | '-'));
    let hex_length = match algorithm {
        "sha256" => Some(64),
        "sha384" => Some(96),
        "sha512" => Some(128),
        _ => None,
    };
    let length_ok = hex_length.is_none_or(|length| {
        encoded.len() == length
            && encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    algorithm_ok && encoded_ok && length_ok
}

fn empty_segment(path: &str) -> RouteError {
    RouteError::EmptySegment {
        path: scope::excerpt(path),
    }
}

fn unknown_endpoint(path: &str) -> RouteError {
    RouteError::UnknownEndpoint {
        path: scope::excerpt(path),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn form_bodies_are_refused_on_writes_only() {
        use super::{refuse_form_body, RouteError};
        let form: &[u8] = b"application/x-www-form-urlencoded; charset=utf-8";
        assert!(refuse_form_body("POST", &[form]).is_err());
        assert!(refuse_form_body("PATCH", &[b"Multipart/Form-Data; boundary=x"]).is_err());
        assert!(refuse_form_body("GET", &[form]).is_ok());
        assert!(refuse_form_body("PUT", &[b"application/octet-stream"]).is_ok());
        assert!(refuse_form_body("POST", &[]).is_ok());
        // Any of several values, and values we cannot read, count.
        assert!(refuse_form_body("POST", &[b"application/octet-stream", form]).is_err());
        assert!(matches!(
            refuse_form_body(
                "POST",
                &[b"application/x-www-form-urlencoded; charset=\xe9"]
            ),
            Err(RouteError::UnreadableContentType)
        ));
    }

    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// Required access rendered as scope strings, or the error variant's debug text.
    fn access(method: &str, uri: &str) -> Result<Vec<String>, RouteError> {
        required_access(method, uri).map(|scopes| scopes.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn every_endpoint_with_every_method() {
        let endpoints = [
            "/v2/team/app/tags/list".to_owned(),
            "/v2/team/app/tags/list?n=10&last=v1".to_owned(),
            "/v2/team/app/manifests/latest".to_owned(),
            "/v2/team/app/manifests/v1.2_3-rc".to_owned(),
            format!("/v2/team/app/manifests/{DIGEST}"),
            format!("/v2/team/app/blobs/{DIGEST}"),
            "/v2/team/app/blobs/uploads/".to_owned(),
            "/v2/team/app/blobs/uploads".to_owned(),
            "/v2/team/app/blobs/uploads/3f1c-AB_9=.x".to_owned(),
            "/v2/team/app/blobs/uploads/3f1c?_state=abc%2Bdef&digest=sha256%3Aab".to_owned(),
            format!("/v2/team/app/referrers/{DIGEST}"),
            format!("/v2/team/app/referrers/{DIGEST}?artifactType=application%2Fjson"),
            format!("/extensions/v2/team/app/signatures/{DIGEST}"),
        ];
        let methods = [
            ("GET", "repository:team/app:pull"),
            ("HEAD", "repository:team/app:pull"),
            ("POST", "repository:team/app:pull,push"),
            ("PUT", "repository:team/app:pull,push"),
            ("PATCH", "repository:team/app:pull,push"),
            ("DELETE", "repository:team/app:delete"),
        ];
        for endpoint in &endpoints {
            for (method, expected) in methods {
                assert_eq!(
                    access(method, endpoint),
                    Ok(vec![expected.to_owned()]),
                    "{method} {endpoint}"
                );
            }
            for method in ["OPTIONS", "TRACE", "CONNECT", "PROPFIND", "get", ""] {
                assert!(
                    matches!(
                        access(method, endpoint),
                        Err(RouteError::UnsupportedMethod { .. })
                    ),
                    "{method} {endpoint}"
                );
            }
        }
    }

    #[test]
    fn base_needs_only_a_valid_credential() {
        for uri in ["/v2/", "/v2", "/v2/?x=1", "/v2?from=other"] {
            assert_eq!(access("GET", uri), Ok(vec![]), "{uri}");
            assert_eq!(access("HEAD", uri), Ok(vec![]), "{uri}");
            assert!(matches!(
                access("POST", uri),
                Err(RouteError::ReadOnlyEndpoint { .. })
            ));
            assert!(matches!(
                access("DELETE", uri),
                Err(RouteError::ReadOnlyEndpoint { .. })
            ));
        }
    }

    #[test]
    fn catalog_needs_the_registry_wildcard() {
        for uri in ["/v2/_catalog", "/v2/_catalog?n=100&last=a%2Fb"] {
            assert_eq!(
                access("GET", uri),
                Ok(vec!["registry:catalog:*".to_owned()])
            );
        }
        assert!(matches!(
            access("PUT", "/v2/_catalog"),
            Err(RouteError::ReadOnlyEndpoint { .. })
        ));
        assert!(matches!(
            access("GET", "/v2/_catalog/"),
            Err(RouteError::EmptySegment { .. })
        ));
    }

    #[test]
    fn blob_mount_also_needs_pull_on_the_source() {
        let uri = format!("/v2/team/app/blobs/uploads/?mount={DIGEST}&from=library%2Fbusybox");
        assert_eq!(
            access("POST", &uri),
            Ok(vec![
                "repository:team/app:pull,push".to_owned(),
                "repository:library/busybox:pull".to_owned()
            ])
        );
        // Without a trailing slash, with the source unencoded, and with a host:port source.
        let uri = format!("/v2/team/app/blobs/uploads?from=localhost:5000/x/y&mount={DIGEST}");
        assert_eq!(
            access("POST", &uri),
            Ok(vec![
                "repository:team/app:pull,push".to_owned(),
                "repository:localhost:5000/x/y:pull".to_owned()
            ])
        );
        // Mounting from the repository itself merges into one scope.
        let uri = format!("/v2/team/app/blobs/uploads/?mount={DIGEST}&from=team/app");
        assert_eq!(
            access("POST", &uri),
            Ok(vec!["repository:team/app:pull,push".to_owned()])
        );
    }

    #[test]
    fn mount_without_from_is_a_plain_upload() {
        for uri in [
            format!("/v2/team/app/blobs/uploads/?mount={DIGEST}"),
            format!("/v2/team/app/blobs/uploads/?mount={DIGEST}&from="),
            "/v2/team/app/blobs/uploads/?".to_owned(),
        ] {
            assert_eq!(
                access("POST", &uri),
                Ok(vec!["repository:team/app:pull,push".to_owned()]),
                "{uri}"
            );
        }
    }

    #[test]
    fn from_on_any_endpoint_needs_pull_on_it_like_the_registry_does() {
        assert_eq!(
            access("POST", "/v2/team/app/blobs/uploads/?fr%6Fm=c"),
            Ok(vec![
                "repository:team/app:pull,push".to_owned(),
                "repository:c:pull".to_owned(),
            ])
        );
        assert_eq!(
            access("DELETE", "/v2/team/app/manifests/latest?from=team/app"),
            Ok(vec!["repository:team/app:delete,pull".to_owned()])
        );
    }

    #[test]
    fn bad_mount_source_is_denied() {
        for from in ["Bad", "a%2F%2Fb", "..%2Fa", "a+b", "%3Ba"] {
            let uri = format!("/v2/team/app/blobs/uploads/?mount={DIGEST}&from={from}");
            assert!(
                matches!(access("POST", &uri), Err(RouteError::InvalidMountSource(_))),
                "{from}"
            );
        }
    }

    /// Issue 8 item 1: a query that a supported registry may read differently from this
    /// check (Distribution built with Go up to 1.16 or later, 3.x, Pulp on Django) is
    /// refused, whatever the endpoint, so that no `from` can hide from it.
    #[test]
    fn queries_parsers_read_differently_are_denied() {
        use QueryError as Q;
        use RouteError as E;
        let mount = format!("/v2/eve/x/blobs/uploads/?mount={DIGEST}");
        let cases: Vec<(String, ExpectedError)> = vec![
            // The reported attack: Go <= 1.16 splits on ';' and mounts alice's blob.
            (format!("{mount};from=alice/private"), |e| {
                matches!(e, E::ForbiddenCharacter { character: ';', .. })
            }),
            (format!("{mount}&x=1;from=alice/private"), |e| {
                matches!(e, E::ForbiddenCharacter { character: ';', .. })
            }),
            ("/v2/eve/x/tags/list?n=1;from=alice/private".into(), |e| {
                matches!(e, E::ForbiddenCharacter { character: ';', .. })
            }),
            // Go reads the first `from`, Django the last.
            (
                format!("{mount}&from=eve/x&from=alice/private"),
                |e| matches!(e, E::Query(Q::Repeated { key }) if key == "from"),
            ),
            (
                format!("{mount}&from=eve/x&%66rom=alice/private"),
                |e| matches!(e, E::Query(Q::Repeated { key }) if key == "from"),
            ),
            (
                format!("{mount}&from=&from=alice/private"),
                |e| matches!(e, E::Query(Q::Repeated { key }) if key == "from"),
            ),
            (
                format!("{mount}&mount={DIGEST}&from=eve/x"),
                |e| matches!(e, E::Query(Q::Repeated { key }) if key == "mount"),
            ),
            // Go drops a pair with an invalid escape; others keep it.
            (format!("{mount}&from=alice/private&x=%zz"), |e| {
                matches!(e, E::Query(Q::InvalidEscape { .. }))
            }),
            (format!("{mount}&fr%6=alice/private"), |e| {
                matches!(e, E::Query(Q::InvalidEscape { .. }))
            }),
            (format!("{mount}&from=alice/private%"), |e| {
                matches!(e, E::Query(Q::InvalidEscape { .. }))
            }),
            // Bytes that are not UTF-8 once decoded: kept by Go, replaced by others.
            (format!("{mount}&from%FF=alice/private"), |e| {
                matches!(e, E::Query(Q::NotUtf8 { .. }))
            }),
            (format!("{mount}&from=%FF"), |e| {
                matches!(e, E::Query(Q::NotUtf8 { .. }))
            }),
            // Encoded control characters: NUL ends C strings, CR/LF forge lines.
            (format!("{mount}&from%00=alice/private"), |e| {
                matches!(e, E::Query(Q::ControlCharacter { .. }))
            }),
            (format!("{mount}&from=alice/private%00"), |e| {
                matches!(e, E::Query(Q::ControlCharacter { .. }))
            }),
            ("/v2/a/tags/list?last=x%0D%0Ay".into(), |e| {
                matches!(e, E::Query(Q::ControlCharacter { .. }))
            }),
            // Raw characters outside RFC 3986, passed on or refused differently by servers.
            (format!("{mount}&from=alice\\private"), |e| {
                matches!(
                    e,
                    E::ForbiddenCharacter {
                        character: '\\',
                        ..
                    }
                )
            }),
            ("/v2/a/tags/list?x=\"y\"".into(), |e| {
                matches!(e, E::ForbiddenCharacter { character: '"', .. })
            }),
            ("/v2/a/tags/list?x={a}|b^c`".into(), |e| {
                matches!(e, E::ForbiddenCharacter { character: '{', .. })
            }),
            ("/v2/a/tags/list?x=[1]".into(), |e| {
                matches!(e, E::ForbiddenCharacter { character: '[', .. })
            }),
            ("/v2/a/tags/list?x=<b>".into(), |e| {
                matches!(e, E::ForbiddenCharacter { character: '<', .. })
            }),
            // The base and the catalog are read strictly too.
            ("/v2/?a=1;b=2".into(), |e| {
                matches!(e, E::ForbiddenCharacter { character: ';', .. })
            }),
            ("/v2/_catalog?last=%zz".into(), |e| {
                matches!(e, E::Query(Q::InvalidEscape { .. }))
            }),
        ];
        for (uri, expected) in &cases {
            for method in ["GET", "POST"] {
                let result = required_access(method, uri);
                assert!(
                    result.as_ref().is_err_and(expected),
                    "{method} {uri:?} gave {result:?}"
                );
            }
        }
        let message = required_access("POST", &format!("{mount};from=alice/private"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("Go up to 1.16"), "{message}");
        let message = required_access("POST", &format!("{mount}&from=a&from=b"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("more than once"), "{message}");
    }

    /// What real clients send still passes: Go-encoded values, `+` for space in values
    /// that are not names, encoded `;`, empty pairs, and parameters without a value.
    #[test]
    fn encoded_queries_of_real_clients_pass() {
        for uri in [
            format!("/v2/a/blobs/uploads/?mount={DIGEST}&from=library%2Fbusybox"),
            "/v2/a/blobs/uploads/3f1c?_state=eyJOYW1lIjoiYSJ9%3D%3D&digest=sha256%3Aab".into(),
            "/v2/a/tags/list?n=10&last=v1%3Bx".into(),
            "/v2/_catalog?n=100&&last=a%2Fb&".into(),
            format!("/v2/a/referrers/{DIGEST}?artifactType=application%2Fvnd.x+y"),
            "/v2/a/tags/list?flag&=x&k=(a)!*,$@:?/~'".into(),
        ] {
            assert!(required_access("GET", &uri).is_ok(), "{uri}");
        }
    }

    #[test]
    fn names_may_contain_endpoint_words() {
        let cases = [
            (format!("/v2/a/blobs/b/blobs/{DIGEST}"), "a/blobs/b"),
            (
                "/v2/a/manifests/b/manifests/latest".to_owned(),
                "a/manifests/b",
            ),
            ("/v2/manifests/tags/list".to_owned(), "manifests"),
            ("/v2/a/manifests/tags/list".to_owned(), "a/manifests"),
            (
                "/v2/blobs/uploads/blobs/uploads/".to_owned(),
                "blobs/uploads",
            ),
            (
                "/v2/x/blobs/uploads/blobs/uploads/id".to_owned(),
                "x/blobs/uploads",
            ),
            ("/v2/a/tags/manifests/list".to_owned(), "a/tags"),
            (format!("/v2/referrers/referrers/{DIGEST}"), "referrers"),
        ];
        for (uri, name) in cases {
            let scopes = required_access("GET", &uri).unwrap();
            assert_eq!(scopes.len(), 1, "{uri}");
            assert_eq!(scopes.first().map(|s| s.name.as_str()), Some(name), "{uri}");
        }
    }

    #[test]
    fn names_with_a_registry_host_follow_the_name_grammar() {
        assert_eq!(
            access("GET", "/v2/localhost:5000/a/b/manifests/latest"),
            Ok(vec!["repository:localhost:5000/a/b:pull".to_owned()])
        );
        assert_eq!(
            access("GET", "/v2/Reg.Example.com/app/tags/list"),
            Ok(vec!["repository:Reg.Example.com/app:pull".to_owned()])
        );
        for uri in [
            "/v2/localhost:5000/manifests/latest",
            "/v2/host:x/a/tags/list",
            "/v2/Upper/tags/list",
        ] {
            assert!(
                matches!(access("GET", uri), Err(RouteError::InvalidName(_))),
                "{uri}"
            );
        }
    }

    /// Recognises the error a case should produce.
    type ExpectedError = fn(&RouteError) -> bool;

    #[test]
    fn confusing_paths_are_denied() {
        use RouteError as E;
        let long_name = format!("/v2/{}/tags/list", "a".repeat(256));
        let cases: Vec<(String, ExpectedError)> = vec![
            ("/v2/a%2Fb/tags/list".into(), |e| {
                matches!(e, E::ForbiddenCharacter { character: '%', .. })
            }),
            ("/v2/a/%2e%2e/b/tags/list".into(), |e| {
                matches!(e, E::ForbiddenCharacter { character: '%', .. })
            }),
            ("/v2/a/../b/tags/list".into(), |e| {
                matches!(e, E::DotSegment { .. })
            }),
            ("/v2/a/./b/tags/list".into(), |e| {
                matches!(e, E::DotSegment { .. })
            }),
            ("/v2/../v2/a/tags/list".into(), |e| {
                matches!(e, E::DotSegment { .. })
            }),
            ("/v2//a/tags/list".into(), |e| {
                matches!(e, E::EmptySegment { .. })
            }),
            ("/v2/a//b/tags/list".into(), |e| {
                matches!(e, E::EmptySegment { .. })
            }),
            ("/v2/a/tags/list/".into(), |e| {
                matches!(e, E::EmptySegment { .. })
            }),
            ("/v2/a/blobs/uploads//".into(), |e| {
                matches!(e, E::EmptySegment { .. })
            }),
            ("/v2//".into(), |e| matches!(e, E::EmptySegment { .. })),
            ("/v3/a/tags/list".into(), |e| {
                matches!(e, E::NotRegistryPath { .. })
            }),
            ("/v2a/tags/list".into(), |e| {
                matches!(e, E::NotRegistryPath { .. })
            }),
            ("/token".into(), |e| matches!(e, E::NotRegistryPath { .. })),
            ("v2/a/tags/list".into(), |e| {
                matches!(e, E::NotRegistryPath { .. })
            }),
            ("".into(), |e| matches!(e, E::NotRegistryPath { .. })),
            ("http://host/v2/a/tags/list".into(), |e| {
                matches!(e, E::NotRegistryPath { .. })
            }),
            ("/extensions/v2/a/tags/list".into(), |e| {
                matches!(e, E::UnknownEndpoint { .. })
            }),
            ("/v2/a/tags".into(), |e| {
                matches!(e, E::UnknownEndpoint { .. })
            }),
            ("/v2/a".into(), |e| matches!(e, E::UnknownEndpoint { .. })),
            ("/v2/a/b".into(), |e| matches!(e, E::UnknownEndpoint { .. })),
            ("/v2/a/manifests".into(), |e| {
                matches!(e, E::UnknownEndpoint { .. })
            }),
            ("/v2/tags/list".into(), |e| matches!(e, E::InvalidName(_))),
            ("/v2/A/tags/list".into(), |e| matches!(e, E::InvalidName(_))),
            (long_name, |e| matches!(e, E::InvalidName(_))),
            ("/v2/a/tags/list#frag".into(), |e| {
                matches!(e, E::ForbiddenCharacter { character: '#', .. })
            }),
            ("/v2/a\\b/tags/list".into(), |e| {
                matches!(
                    e,
                    E::ForbiddenCharacter {
                        character: '\\',
                        ..
                    }
                )
            }),
            ("/v2/a b/tags/list".into(), |e| {
                matches!(e, E::ForbiddenCharacter { character: ' ', .. })
            }),
            ("/v2/a\tb/tags/list".into(), |e| {
                matches!(e, E::ForbiddenCharacter { .. })
            }),
            ("/v2/a\0/tags/list".into(), |e| {
                matches!(e, E::ForbiddenCharacter { .. })
            }),
            ("/v2/a/tags/list?x=\n".into(), |e| {
                matches!(e, E::ForbiddenCharacter { .. })
            }),
            ("/v2/a;b/tags/list".into(), |e| {
                matches!(e, E::ForbiddenCharacter { character: ';', .. })
            }),
            ("/v2/é/tags/list".into(), |e| {
                matches!(e, E::ForbiddenCharacter { .. })
            }),
            ("/v2/a/manifests/-bad".into(), |e| {
                matches!(e, E::InvalidReference { .. })
            }),
            (format!("/v2/a/manifests/{}", "t".repeat(129)), |e| {
                matches!(e, E::InvalidReference { .. })
            }),
            ("/v2/a/blobs/latest".into(), |e| {
                matches!(e, E::InvalidDigest { .. })
            }),
            ("/v2/a/blobs/sha256:abc".into(), |e| {
                matches!(e, E::InvalidDigest { .. })
            }),
            (format!("/v2/a/blobs/{}", DIGEST.to_uppercase()), |e| {
                matches!(e, E::InvalidDigest { .. })
            }),
            ("/v2/a/blobs/sha256:".into(), |e| {
                matches!(e, E::InvalidDigest { .. })
            }),
            ("/v2/a/blobs/:abc".into(), |e| {
                matches!(e, E::InvalidDigest { .. })
            }),
            ("/v2/a/blobs/sha+:abc".into(), |e| {
                matches!(e, E::InvalidDigest { .. })
            }),
            ("/v2/a/referrers/latest".into(), |e| {
                matches!(e, E::InvalidDigest { .. })
            }),
            ("/extensions/v2/a/signatures/latest".into(), |e| {
                matches!(e, E::InvalidDigest { .. })
            }),
            ("/extensions/v2/a/signatures/x/".into(), |e| {
                matches!(e, E::EmptySegment { .. })
            }),
            ("/v2/a/blobs/uploads/a:b".into(), |e| {
                matches!(e, E::InvalidUploadId { .. })
            }),
            ("/v2/a/blobs/uploads/a+b".into(), |e| {
                matches!(e, E::InvalidUploadId { .. })
            }),
        ];
        for (uri, expected) in &cases {
            let result = required_access("GET", uri);
            assert!(
                result.as_ref().is_err_and(expected),
                "{uri:?} gave {result:?}"
            );
        }
    }

    #[test]
    fn manifest_references_accept_tags_and_digests() {
        for reference in [
            "latest",
            "_x",
            "V1.0-rc.1",
            &"t".repeat(128),
            DIGEST,
            "sha512+b64u:abc_DEF=-",
            "blake3:abc",
        ] {
            let uri = format!("/v2/a/manifests/{reference}");
            assert!(required_access("GET", &uri).is_ok(), "{reference}");
        }
    }

    #[test]
    fn error_messages_explain_the_refusal() {
        let message = required_access("GET", "/v2/a%2Fb/tags/list")
            .unwrap_err()
            .to_string();
        assert!(message.contains("percent-encoding"), "{message}");
        let message = required_access("GET", "/v2/A/tags/list")
            .unwrap_err()
            .to_string();
        assert!(message.contains("repository name \"A\""), "{message}");
        let message = required_access("OPTIONS", "/v2/").unwrap_err().to_string();
        assert_eq!(
            message,
            "method \"OPTIONS\" is not part of the registry API"
        );
        let message = required_access("POST", "/v2/a/blobs/uploads/?from=B")
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("blob mount source ?from=: repository name \"B\""),
            "{message}"
        );
    }

    #[test]
    fn manifest_writes_say_what_they_write() {
        let write = |method, uri: &str| classify(method, uri).unwrap().manifest_write;
        assert_eq!(
            write("PUT", "/v2/app/web/manifests/v1.2"),
            Some(ManifestWrite {
                name: "app/web".into(),
                reference: Reference::Tag("v1.2".into())
            })
        );
        assert_eq!(
            write("DELETE", &format!("/v2/app/manifests/{DIGEST}")),
            Some(ManifestWrite {
                name: "app".into(),
                reference: Reference::Digest(DIGEST.into())
            })
        );
        for (method, uri) in [
            ("GET", "/v2/app/manifests/v1".to_owned()),
            ("HEAD", "/v2/app/manifests/v1".to_owned()),
            ("PUT", format!("/v2/app/blobs/uploads/x?digest={DIGEST}")),
            ("DELETE", format!("/v2/app/blobs/{DIGEST}")),
            ("POST", "/v2/app/blobs/uploads/".to_owned()),
        ] {
            assert_eq!(write(method, &uri), None, "{method} {uri}");
        }
    }
}
