//! Request parameters of the token endpoint: the GET query and the POST
//! form, both `application/x-www-form-urlencoded` (Go clients encode spaces
//! as `+`, so plain percent-decoding would be wrong).
//!
//! They are read with [`crate::query`]: a query or form that parsers could
//! read differently (a raw `;`, an invalid escape, bytes that are not UTF-8)
//! is refused with 400 rather than guessed at, and so is a control
//! character in any key or value but the password (it could forge log
//! lines, and no client sends one).

use super::ApiError;
use crate::query::Pairs;
use crate::scope::{parse_scopes, ResourceScope};
use crate::snapshot::Snapshot;

/// Most resources one token may name. Real clients ask for one to three
/// (a push with a cross-repository mount); the bound keeps tokens, the
/// `/auth` cache and log lines small whatever a caller sends.
pub const MAX_RESOURCES: usize = 128;

/// Values compared as given and never shown, where any character may be
/// meant.
const OPAQUE_FIELDS: [&str; 1] = ["password"];

/// Request parameters, decoded as `application/x-www-form-urlencoded`
/// (Go clients encode spaces as `+`), in order.
pub struct Params(Pairs);

impl Params {
    /// Decodes a query string or form body; refuses one that parsers may
    /// read differently.
    pub fn parse(input: &[u8]) -> Result<Params, ApiError> {
        let pairs = Pairs::parse(input)
            .and_then(|pairs| {
                pairs
                    .refuse_control_characters(&OPAQUE_FIELDS)
                    .map(|()| pairs)
            })
            .map_err(|error| ApiError::BadRequest {
                code: "UNSUPPORTED_VALUE",
                message: format!("parameters refused: {error}"),
            })?;
        Ok(Params(pairs))
    }

    /// A field that may appear at most once (repeats must agree).
    pub fn single(&self, name: &'static str) -> Result<Option<&str>, ApiError> {
        let mut values = self.all(name);
        let first = values.next();
        if values.any(|other| Some(other) != first) {
            return Err(ApiError::BadRequest {
                code: "UNSUPPORTED_VALUE",
                message: format!("`{name}` given more than once with different values"),
            });
        }
        Ok(first)
    }

    /// A field that must be present and non-empty, at most once.
    pub fn required(&self, name: &'static str) -> Result<&str, ApiError> {
        self.single(name)?
            .filter(|value| !value.is_empty())
            .ok_or_else(|| ApiError::BadRequest {
                code: "MISSING_REQUIRED_FIELD",
                message: format!("`{name}` is required"),
            })
    }

    /// Every value of a field, in order.
    pub fn all(&self, name: &'static str) -> impl Iterator<Item = &str> {
        self.0.all(name)
    }

    /// Every requested scope: repeated fields, each possibly space-joined,
    /// at most [`MAX_RESOURCES`] resources.
    pub fn scopes(&self) -> Result<Vec<ResourceScope>, ApiError> {
        let scopes = parse_scopes(self.all("scope")).map_err(|e| ApiError::BadRequest {
            code: "INVALID_SCOPE",
            message: e.to_string(),
        })?;
        if scopes.len() > MAX_RESOURCES {
            return Err(ApiError::BadRequest {
                code: "INVALID_SCOPE",
                message: format!(
                    "{} resources requested; at most {MAX_RESOURCES} fit in one token",
                    scopes.len()
                ),
            });
        }
        Ok(scopes)
    }

    /// `service` may be left out (the configured one is meant); any other
    /// value than the configured one is a misdirected request.
    pub fn check_service(&self, snapshot: &Snapshot) -> Result<(), ApiError> {
        match self.single("service")? {
            Some(service) if !service.is_empty() && service != snapshot.config.service => {
                Err(ApiError::BadRequest {
                    code: "UNSUPPORTED_VALUE",
                    message: format!(
                        "unknown service `{}`; this server issues tokens for `{}`",
                        crate::scope::excerpt(service),
                        snapshot.config.service
                    ),
                })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_decode_plus_and_reject_conflicts() {
        let params =
            Params::parse(b"scope=repository%3Aa%3Apull+repository%3Ab%3Apush&service=x&service=y")
                .unwrap();
        assert_eq!(
            params.all("scope").next(),
            Some("repository:a:pull repository:b:push")
        );
        assert!(params.single("service").is_err());
        assert_eq!(params.scopes().unwrap().len(), 2);
    }

    #[test]
    fn resources_per_token_are_bounded() {
        let many: String = (0..=MAX_RESOURCES)
            .map(|i| format!("scope=repository%3Ar{i}%3Apull&"))
            .collect();
        let error = Params::parse(many.as_bytes())
            .unwrap()
            .scopes()
            .unwrap_err();
        assert!(error.to_string().contains("at most 128"), "{error}");
        let fits: String = (0..MAX_RESOURCES)
            .map(|i| format!("scope=repository%3Ar{i}%3Apull&"))
            .collect();
        assert_eq!(
            Params::parse(fits.as_bytes())
                .unwrap()
                .scopes()
                .unwrap()
                .len(),
            MAX_RESOURCES
        );
    }

    /// Issue 8 item 1, on the token endpoint's own parsing: what parsers
    /// read differently is refused, not guessed at.
    #[test]
    fn parameters_parsers_read_differently_are_refused() {
        for (input, why) in [
            (
                &b"scope=repository%3Aa%3Apull;scope=repository%3Ab%3Apush"[..],
                "';'",
            ),
            (b"service=x;account=admin", "';'"),
            (b"scope=repository%3Aa%3Apull%zz", "percent-encoding"),
            (b"username=alice%", "percent-encoding"),
            (b"username=alice%FF", "UTF-8"),
            (b"user%FFname=alice", "UTF-8"),
            (
                b"service=x%0A2026-01-01T00:00:00Z%20INFO%20regauth::audit",
                "control",
            ),
            (b"scope=repository%3Aa%3Apull%0D", "control"),
            (b"grant_type=password%00", "control"),
            (b"user%00name=alice", "control"),
        ] {
            let error = Params::parse(input).err().map(|e| e.to_string());
            assert!(
                error.as_deref().is_some_and(|e| e.contains(why)),
                "{:?} gave {error:?}",
                String::from_utf8_lossy(input)
            );
        }
        // A password is opaque: any character may be meant, and it is never shown.
        let params = Params::parse(b"username=alice&password=p%3Bw%00%0A%C3%A9+x").unwrap();
        assert_eq!(params.single("password").unwrap(), Some("p;w\0\né x"));
    }
}
