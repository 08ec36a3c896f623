//! Request parameters of the token endpoint: the GET query and the POST
//! form, both `application/x-www-form-urlencoded` (Go clients encode spaces
//! as `+`, so plain percent-decoding would be wrong).

use std::borrow::Cow;

use super::ApiError;
use crate::scope::{parse_scopes, ResourceScope};
use crate::snapshot::Snapshot;

/// Request parameters, decoded as `application/x-www-form-urlencoded`
/// (Go clients encode spaces as `+`).
pub struct Params<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> Params<'a> {
    /// Decodes a query string or form body.
    pub fn parse(input: &'a [u8]) -> Params<'a> {
        Params(form_urlencoded::parse(input).collect())
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
        self.0
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_ref())
    }

    /// Every requested scope: repeated fields, each possibly space-joined.
    pub fn scopes(&self) -> Result<Vec<ResourceScope>, ApiError> {
        parse_scopes(self.all("scope")).map_err(|e| ApiError::BadRequest {
            code: "INVALID_SCOPE",
            message: e.to_string(),
        })
    }

    /// `service` may be left out (the configured one is meant); any other
    /// value than the configured one is a misdirected request.
    pub fn check_service(&self, snapshot: &Snapshot) -> Result<(), ApiError> {
        match self.single("service")? {
            Some(service) if !service.is_empty() && service != snapshot.config.service => {
                Err(ApiError::BadRequest {
                    code: "UNSUPPORTED_VALUE",
                    message: format!(
                        "unknown service `{service}`; this server issues tokens for `{}`",
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
            Params::parse(b"scope=repository%3Aa%3Apull+repository%3Ab%3Apush&service=x&service=y");
        assert_eq!(
            params.all("scope").next(),
            Some("repository:a:pull repository:b:push")
        );
        assert!(params.single("service").is_err());
        assert_eq!(params.scopes().unwrap().len(), 2);
    }
}
