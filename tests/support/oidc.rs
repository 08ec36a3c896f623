//! A real HTTPS OIDC issuer for the federation tests: nginx serving a static discovery
//! document and a JWKS over TLS, with a test CA made here (rcgen) and a server
//! certificate for `127.0.0.1`. The test mints workload ID tokens itself with the
//! issuer's ES256 key, as GitHub Actions or GitLab CI would.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::{free_port, start_nginx, Harness};

/// A running issuer. Its nginx lives in its own [`Harness`] (own temp dir), stopped when
/// this is dropped.
pub struct OidcIssuer {
    pub h: Harness,
    /// `https://127.0.0.1:PORT`: the `iss` of its tokens.
    pub url: String,
    /// The test CA's certificate (regauth's `ca_file`).
    pub ca_file: PathBuf,
    signer: jsonwebtoken::EncodingKey,
    kid: String,
}

impl OidcIssuer {
    /// Makes the CA, the server certificate and the signing key, writes the documents,
    /// and starts nginx with TLS.
    pub fn start(label: &str) -> OidcIssuer {
        let mut h = Harness::new(&format!("{label}-issuer"));
        let port = free_port();
        let url = format!("https://127.0.0.1:{port}");

        // The test CA, and a server certificate it signs (serverAuth, not a CA itself:
        // what webpki insists on).
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA");
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "regauth test CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA cert");
        let server_key = rcgen::KeyPair::generate().expect("server key");
        let mut server_params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("server");
        server_params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("127.0.0.1".parse().expect("IP")));
        server_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let server = server_params
            .signed_by(&server_key, &ca)
            .expect("server cert");
        let ca_file = h.write("ca.crt", ca.pem());
        let cert = h.write("server.crt", server.pem());
        let key = h.write("server.key", server_key.serialize_pem());

        // The token signing key (ES256) and its JWK.
        let signing = rcgen::KeyPair::generate().expect("signing key");
        let point = signing.public_key_raw(); // 0x04 || x || y
        let b64 = |bytes: &[u8]| data_encoding::BASE64URL_NOPAD.encode(bytes);
        let kid = format!("test-{}", super::random_hex(4));
        let jwks = json!({ "keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        }]});
        let signer = jsonwebtoken::EncodingKey::from_ec_pem(signing.serialize_pem().as_bytes())
            .expect("signing key PEM");
        let docroot = h.mkdir("docroot/.well-known");
        h.write(
            "docroot/.well-known/openid-configuration",
            json!({
                "issuer": url,
                "jwks_uri": format!("{url}/keys/jwks.json"),
                "id_token_signing_alg_values_supported": ["ES256"],
            })
            .to_string(),
        );
        h.write("docroot/keys/jwks.json", jwks.to_string());
        let root = docroot.parent().expect("docroot");
        let body = format!(
            "server {{\n\
             listen 127.0.0.1:{port} ssl;\n\
             ssl_certificate {cert};\n\
             ssl_certificate_key {key};\n\
             root {root};\n\
             default_type application/json;\n\
             }}\n",
            cert = cert.display(),
            key = key.display(),
            root = root.display(),
        );
        start_nginx(&mut h, &body, &[port]);
        OidcIssuer {
            h,
            url,
            ca_file,
            signer,
            kid,
        }
    }

    /// Claims as GitHub Actions puts them in an ID token, valid for five minutes.
    pub fn github_claims(&self, audience: &str, owner: &str, git_ref: &str) -> Value {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        json!({
            "iss": self.url,
            "aud": audience,
            "sub": format!("repo:{owner}/app:ref:{git_ref}"),
            "repository": format!("{owner}/app"),
            "repository_owner": owner,
            "ref": git_ref,
            "workflow": "build",
            "iat": now, "nbf": now, "exp": now + 300,
        })
    }

    /// Signs `claims` with the issuer's key (ES256, with its `kid`).
    pub fn mint(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.signer).expect("sign ID token")
    }

    /// Stops the issuer's nginx: from now on it is unreachable.
    pub fn stop(&mut self) {
        self.h.stop("nginx");
    }
}
