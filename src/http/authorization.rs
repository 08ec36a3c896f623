//! The credential a request carries in its `Authorization` header: Basic,
//! Bearer, nothing, or something unreadable.

use http::header::AUTHORIZATION;
use http::HeaderMap;
use zeroize::Zeroizing;

/// The credential a request carries.
pub enum Authorization {
    /// No `Authorization` header, or Basic with an empty user and password
    /// (containers/image sends `Basic Og==` when it has no credentials).
    Nothing,
    /// Basic credentials.
    Basic {
        /// The user name, possibly empty (containerd sends a refresh token
        /// as the password of an empty user).
        user: String,
        /// The password; wiped from memory when dropped.
        password: Zeroizing<String>,
    },
    /// A bearer token, split the way registry 2.8 splits it.
    Bearer(String),
    /// A header we cannot read; the reason is safe to log and show.
    Malformed(&'static str),
}

/// Reads the `Authorization` header.
pub fn parse(headers: &HeaderMap) -> Authorization {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Authorization::Nothing;
    };
    let Ok(value) = value.to_str() else {
        return Authorization::Malformed("Authorization header is not ASCII");
    };
    let mut parts = value.split(' ');
    let (Some(scheme), Some(credential), None) = (parts.next(), parts.next(), parts.next()) else {
        return Authorization::Malformed("Authorization header must be `<scheme> <credential>`");
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        return Authorization::Bearer(credential.to_owned());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Authorization::Malformed("unsupported Authorization scheme");
    }
    let Ok(decoded) = data_encoding::BASE64.decode(credential.as_bytes()) else {
        return Authorization::Malformed("Basic credentials are not valid base64");
    };
    let decoded = Zeroizing::new(decoded);
    let Ok(text) = std::str::from_utf8(&decoded) else {
        return Authorization::Malformed("Basic credentials are not UTF-8");
    };
    let Some((user, password)) = text.split_once(':') else {
        return Authorization::Malformed("Basic credentials lack the `:` separator");
    };
    if user.is_empty() && password.is_empty() {
        return Authorization::Nothing;
    }
    Authorization::Basic {
        user: user.to_owned(),
        password: Zeroizing::new(password.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(value: &str) -> Authorization {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        parse(&headers)
    }

    #[test]
    fn forms() {
        assert!(matches!(parse(&HeaderMap::new()), Authorization::Nothing));
        assert!(matches!(with("Basic Og=="), Authorization::Nothing));
        match with("Basic YWxpY2U6czNjcjp0") {
            Authorization::Basic { user, password } => {
                assert_eq!(user, "alice");
                assert_eq!(password.as_str(), "s3cr:t");
            }
            _ => panic!("expected Basic"),
        }
        assert!(
            matches!(with("bearer abc.def.ghi"), Authorization::Bearer(t) if t == "abc.def.ghi")
        );
        assert!(matches!(with("Bearer  abc"), Authorization::Malformed(_)));
        assert!(matches!(with("Basic !!!"), Authorization::Malformed(_)));
        assert!(matches!(
            with("Basic YWxpY2U="),
            Authorization::Malformed(_)
        ));
        assert!(matches!(with("Digest x"), Authorization::Malformed(_)));
    }
}
