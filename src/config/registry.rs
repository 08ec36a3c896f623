//! The optional `registry` section: what regauth knows about the registry that verifies
//! its tokens, and the warnings `check-config` (and the start-up summary) gives about
//! token setups that registry would refuse wholesale (real-peers.md, registry 3).
//!
//! ```json
//! "registry": { "version": 3, "keys": "jwks" }
//! ```
//!
//! `version` is Distribution's major version (2 or 3); `keys` says which of the
//! registry's `auth.token` options holds regauth's keys: `rootcertbundle` (certificates)
//! or `jwks` (the output of `regauth jwks`). Neither changes what regauth does.

use serde::Deserialize;

use crate::keys::{Algorithm, KidFormat};

/// The `registry` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    /// Distribution's major version.
    pub version: RegistryVersion,
    /// Where the registry reads regauth's keys from, when known.
    #[serde(default)]
    pub keys: Option<RegistryKeys>,
}

/// A Distribution major version regauth knows the token checks of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u64")]
pub enum RegistryVersion {
    /// Registry 2.x (Debian's `docker-registry`): libtrust `kid`s, ES256/RS256 only.
    V2,
    /// Registry 3.x: RFC 7638 `kid`s, a JWKS file, PS256 too.
    V3,
}

impl TryFrom<u64> for RegistryVersion {
    type Error = String;

    fn try_from(major: u64) -> Result<Self, Self::Error> {
        match major {
            2 => Ok(RegistryVersion::V2),
            3 => Ok(RegistryVersion::V3),
            other => Err(format!(
                "registry version {other} is unknown; use 2 or 3 (the major version)"
            )),
        }
    }
}

/// Which `auth.token` option of the registry holds regauth's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistryKeys {
    /// `rootcertbundle`: regauth's certificate(s).
    Rootcertbundle,
    /// `jwks`: the output of `regauth jwks` (registry 3 only).
    Jwks,
}

/// How regauth signs: what the registry's checks depend on.
#[derive(Debug, Clone, Copy)]
pub struct Signing {
    /// Tokens carry `x5c` (a `token.certificate` is configured).
    pub sends_x5c: bool,
    /// The `token.kid` format.
    pub kid: KidFormat,
    /// The `token.algorithm`.
    pub algorithm: Algorithm,
}

/// Warnings about setups in which the registry would refuse every token, one line each,
/// for `registry` (`None` when the config does not say which registry checks tokens).
pub fn registry_warnings(registry: Option<&RegistrySettings>, signing: Signing) -> Vec<String> {
    let mut warnings = Vec::new();
    let Some(registry) = registry else {
        if signing.algorithm == Algorithm::Ps256 {
            warnings.push(PS256_ON_2.to_owned());
        }
        return warnings;
    };
    let keys = registry.keys;
    match registry.version {
        RegistryVersion::V2 => {
            if signing.algorithm == Algorithm::Ps256 {
                warnings.push(PS256_ON_2.to_owned());
            }
            if keys == Some(RegistryKeys::Jwks) {
                warnings.push(
                    "registry 2.x has no auth.token.jwks: give it token.certificate as \
                     rootcertbundle (registry.keys)"
                        .to_owned(),
                );
            }
            if !signing.sends_x5c && signing.kid == KidFormat::Thumbprint {
                warnings.push(
                    "registry 2.x looks a token's kid up as a libtrust key ID: with kid \
                     \"thumbprint\" and no token.certificate (x5c) it refuses every token; \
                     set token.kid to \"libtrust\""
                        .to_owned(),
                );
            }
        }
        RegistryVersion::V3 => {
            if signing.sends_x5c && keys != Some(RegistryKeys::Rootcertbundle) {
                warnings.push(format!(
                    "{}registry 3 checks a token's x5c chain against auth.token.rootcertbundle \
                     and never falls back to the kid: with auth.token.jwks alone it refuses \
                     every token; remove token.certificate to use `regauth jwks`, or give the \
                     registry the certificate as rootcertbundle",
                    if keys.is_none() {
                        "if the registry reads only a JWKS (registry.keys unset): "
                    } else {
                        ""
                    }
                ));
            }
            if !signing.sends_x5c
                && signing.kid == KidFormat::Libtrust
                && keys != Some(RegistryKeys::Jwks)
            {
                warnings.push(format!(
                    "{}registry 3 looks a kid up among the RFC 7638 thumbprints of its \
                     rootcertbundle keys, which a libtrust kid never matches: it refuses every \
                     token; set token.kid to \"thumbprint\", or give the registry \
                     `regauth jwks` as auth.token.jwks",
                    if keys.is_none() {
                        "if the registry reads rootcertbundle (registry.keys unset): "
                    } else {
                        ""
                    }
                ));
            }
        }
    }
    warnings
}

/// The PS256 warning for registry 2.x, or for a registry of unknown version.
const PS256_ON_2: &str =
    "PS256 tokens are refused by Distribution registry 2.x; use ES256 or RS256 there";

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(json: &str) -> Result<RegistrySettings, serde_json::Error> {
        serde_json::from_str(json)
    }

    fn signing(sends_x5c: bool, kid: KidFormat, algorithm: Algorithm) -> Signing {
        Signing {
            sends_x5c,
            kid,
            algorithm,
        }
    }

    fn v3(keys: Option<RegistryKeys>) -> RegistrySettings {
        RegistrySettings {
            version: RegistryVersion::V3,
            keys,
        }
    }

    #[test]
    fn section_parses_and_refuses_unknown_versions_and_fields() {
        assert_eq!(settings(r#"{"version": 3}"#).unwrap(), v3(None));
        assert_eq!(
            settings(r#"{"version": 2, "keys": "rootcertbundle"}"#).unwrap(),
            RegistrySettings {
                version: RegistryVersion::V2,
                keys: Some(RegistryKeys::Rootcertbundle)
            }
        );
        let message = settings(r#"{"version": 4}"#).unwrap_err().to_string();
        assert!(message.contains("use 2 or 3"), "{message}");
        assert!(settings(r#"{"version": "3"}"#).is_err());
        assert!(settings(r#"{"version": 3, "keys": "pem"}"#).is_err());
        assert!(settings(r#"{"version": 3, "jwks": true}"#).is_err());
        assert!(settings(r#"{}"#).is_err());
    }

    /// The two setups registry 3 refuses wholesale, each warned about when known.
    #[test]
    fn registry_3_failing_setups_are_named() {
        use Algorithm::*;
        use KidFormat::*;
        let jwks = v3(Some(RegistryKeys::Jwks));
        let bundle = v3(Some(RegistryKeys::Rootcertbundle));

        // x5c with a JWKS only.
        let w = registry_warnings(Some(&jwks), signing(true, Thumbprint, Es256));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("registry 3 checks a token's x5c chain"),
            "{w:?}"
        );
        // A libtrust kid, no certificate, rootcertbundle.
        let w = registry_warnings(Some(&bundle), signing(false, Libtrust, Rs256));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("libtrust kid never matches"), "{w:?}");

        // The working setups: x5c + rootcertbundle (either kid), JWKS without x5c
        // (either kid: the registry takes JWKS kids literally), thumbprint + bundle.
        for (registry, setup) in [
            (&bundle, signing(true, Libtrust, Es256)),
            (&bundle, signing(true, Thumbprint, Ps256)),
            (&bundle, signing(false, Thumbprint, Es256)),
            (&jwks, signing(false, Thumbprint, Es256)),
            (&jwks, signing(false, Libtrust, Rs256)),
        ] {
            let w = registry_warnings(Some(registry), setup);
            assert!(w.is_empty(), "{registry:?} {setup:?}: {w:?}");
        }
    }

    #[test]
    fn registry_3_without_keys_warns_conditionally() {
        let w = registry_warnings(
            Some(&v3(None)),
            signing(true, KidFormat::Libtrust, Algorithm::Es256),
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("if the registry reads only a JWKS"),
            "{w:?}"
        );
        let w = registry_warnings(
            Some(&v3(None)),
            signing(false, KidFormat::Libtrust, Algorithm::Es256),
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("if the registry reads rootcertbundle"),
            "{w:?}"
        );
        let quiet = signing(false, KidFormat::Thumbprint, Algorithm::Ps256);
        assert!(registry_warnings(Some(&v3(None)), quiet).is_empty());
    }

    #[test]
    fn registry_2_and_unknown_registries() {
        let v2 = RegistrySettings {
            version: RegistryVersion::V2,
            keys: Some(RegistryKeys::Jwks),
        };
        let w = registry_warnings(
            Some(&v2),
            signing(false, KidFormat::Thumbprint, Algorithm::Ps256),
        );
        assert_eq!(w.len(), 3, "{w:?}");
        assert_eq!(w[0], PS256_ON_2);
        assert!(w[1].contains("no auth.token.jwks"), "{w:?}");
        assert!(w[2].contains("libtrust key ID"), "{w:?}");
        // Unknown registry: only the PS256 caution, as before this section existed.
        let ps256 = signing(false, KidFormat::Libtrust, Algorithm::Ps256);
        assert_eq!(registry_warnings(None, ps256), [PS256_ON_2]);
        let es256 = signing(false, KidFormat::Thumbprint, Algorithm::Es256);
        assert!(registry_warnings(None, es256).is_empty());
    }
}
