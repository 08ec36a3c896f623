//! The credential a request carries in its `Authorization` header: Basic,
//! Bearer, nothing, or something unreadable.

use http::header::AUTHORIZATION;
use http::HeaderMap;
use zeroize::Zeroizing;

/// The credential a request carries.
pub enum Authorization<'h> {
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
    /// A bearer token, split the way registry 2.8 splits it; borrowed from
    /// the header, as `/auth` only hashes it (when its verdict is cached).
    Bearer(&'h str),
    /// A header we cannot read; the reason is safe to log and show.
    Malformed(&'static str),
}

/// Reads the `Authorization` header.
pub fn parse(headers: &HeaderMap) -> Authorization<'_> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Authorization::Nothing;
    };
    let (scheme, credential) = match split_scheme(value.as_bytes()) {
        Ok(parts) => parts,
        Err(reason) => return Authorization::Malformed(reason),
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        return Authorization::Bearer(credential);
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

/// `<scheme> <credential>`, both printable ASCII without spaces. The
/// credential (a bearer token is a kilobyte) is checked in one branch-free
/// pass; only a header that fails it is looked at again, for the reason.
fn split_scheme(value: &[u8]) -> Result<(&str, &str), &'static str> {
    const FORM: &str = "Authorization header must be `<scheme> <credential>`";
    const NOT_ASCII: &str = "Authorization header is not ASCII";
    let printable = |bytes: &[u8]| {
        bytes
            .iter()
            .fold(true, |all, byte| all & (b'!'..=b'~').contains(byte))
    };
    let space = value.iter().position(|&byte| byte == b' ');
    if let Some((scheme, credential)) = space.map(|at| (&value[..at], &value[at + 1..])) {
        if printable(scheme) && printable(credential) {
            // Printable ASCII is UTF-8: these never fail.
            if let (Ok(scheme), Ok(credential)) =
                (std::str::from_utf8(scheme), std::str::from_utf8(credential))
            {
                return Ok((scheme, credential));
            }
        }
    }
    // What `HeaderValue::to_str` accepts: printable ASCII, spaces and tabs.
    let text = value
        .iter()
        .all(|&byte| byte == b'\t' || (b' '..=b'~').contains(&byte));
    Err(if text { FORM } else { NOT_ASCII })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn forms() {
        assert!(matches!(parse(&HeaderMap::new()), Authorization::Nothing));
        assert!(matches!(parse(&with("Basic Og==")), Authorization::Nothing));
        match parse(&with("Basic YWxpY2U6czNjcjp0")) {
            Authorization::Basic { user, password } => {
                assert_eq!(user, "alice");
                assert_eq!(password.as_str(), "s3cr:t");
            }
            _ => panic!("expected Basic"),
        }
        assert!(
            matches!(parse(&with("bearer abc.def.ghi")), Authorization::Bearer(t) if t == "abc.def.ghi")
        );
        let malformed = [
            "Bearer  abc",
            "Bearer abc def",
            "Bearer",
            "Basic !!!",
            "Basic YWxpY2U=",
            "Digest x",
        ];
        for value in malformed {
            let headers = with(value);
            assert!(
                matches!(parse(&headers), Authorization::Malformed(_)),
                "{value}"
            );
        }
    }
}
