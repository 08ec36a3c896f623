//! Listeners: `"host:port"`, `"unix:/path"`, or an object with options
//! (trusted, socket mode and group), parsed once into a [`Listener`].

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::LazyLock;

use serde::de::{self, Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::sections::{AuthSettings, ConnectionBudget};
use super::values::{deserialize_parsed, HeaderField};

/// One listener, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Where it binds.
    pub address: ListenAddress,
    /// Whether requests on this listener may carry a front proxy's user
    /// header (`auth.trusted_user_header`). Only mark listeners that nothing
    /// but the proxy can reach, such as a unix socket.
    pub trusted: bool,
    /// Unix socket file mode; unix listeners only.
    pub mode: Option<SocketMode>,
    /// Unix socket group, so that nginx's user can connect; unix listeners only.
    pub group: Option<String>,
    /// This listener's own connection budget; `limits.max_connections`
    /// when unset. Budgets are per listener so that clients of one (say,
    /// a public TCP port) can never starve another (nginx's unix socket).
    pub max_connections: Option<ConnectionBudget>,
    /// Which front proxy asks `/auth` here, and so which headers carry the
    /// original request: each listener believes only its own proxy's kind.
    pub front: Front,
}

/// The front proxy of a listener: where `/auth` reads the original method
/// and URI. A proxy that forwards every client header (Caddy, Traefik)
/// overwrites only its own kind, so a listener must not read the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Front {
    /// nginx `auth_request`: `auth.method_header` and `auth.uri_header`
    /// (`X-Original-Method`, `X-Original-URI` by default).
    #[default]
    Nginx,
    /// Caddy `forward_auth`: `X-Forwarded-Method` and `X-Forwarded-Uri`.
    Caddy,
    /// Traefik `ForwardAuth`: the same headers as Caddy.
    Traefik,
}

static FORWARDED_METHOD: LazyLock<HeaderField> =
    LazyLock::new(|| HeaderField::from_static("X-Forwarded-Method"));
static FORWARDED_URI: LazyLock<HeaderField> =
    LazyLock::new(|| HeaderField::from_static("X-Forwarded-Uri"));

impl Front {
    /// The headers that carry the original method and URI (with its
    /// query) from this kind of proxy.
    pub fn original_request_headers(self, auth: &AuthSettings) -> (&HeaderField, &HeaderField) {
        match self {
            Front::Nginx => (&auth.method_header, &auth.uri_header),
            Front::Caddy | Front::Traefik => (&FORWARDED_METHOD, &FORWARDED_URI),
        }
    }

    /// The proxy's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Front::Nginx => "nginx",
            Front::Caddy => "caddy",
            Front::Traefik => "traefik",
        }
    }
}

impl Listener {
    /// A listener at `address` with no options.
    pub fn at(address: ListenAddress) -> Listener {
        Listener {
            address,
            trusted: false,
            mode: None,
            group: None,
            max_connections: None,
            front: Front::Nginx,
        }
    }

    /// Whether it is a unix socket.
    pub fn is_unix(&self) -> bool {
        matches!(self.address, ListenAddress::Unix(_))
    }

    /// What `check-config` and the start-up log warn about this listener's
    /// trust (`auth` names the headers it believes), one line each.
    ///
    /// A trusted listener believes the last `X-Forwarded-For` entry and,
    /// with `auth.trusted_user_header`, the user (and groups) a proxy names.
    /// On TCP, anyone who reaches the port can send those. Behind Caddy or
    /// Traefik, so can any client of the proxy: both pass every client
    /// header on to `/auth`, and unlike the shipped nginx include they do
    /// not overwrite the user header unless told to. (The address needs no
    /// warning there: both set `X-Forwarded-For` themselves, ending in the
    /// client's address.)
    pub fn trust_warnings(&self, auth: &AuthSettings) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.trusted {
            return warnings;
        }
        if !self.is_unix() {
            warnings.push(format!(
                "{} is trusted: anyone who can reach this TCP port may name any account in {}; \
                 make sure only the front proxy can",
                self.address,
                auth.trusted_user_header
                    .as_ref()
                    .map_or("auth.trusted_user_header", HeaderField::as_str)
            ));
        }
        let Some(user) = &auth.trusted_user_header else {
            return warnings;
        };
        let headers: Vec<&str> = [Some(user), auth.trusted_groups_header.as_ref()]
            .into_iter()
            .flatten()
            .map(HeaderField::as_str)
            .collect();
        let each = |spelled: fn(&str) -> String| -> String {
            let spelled: Vec<String> = headers.iter().map(|name| spelled(name)).collect();
            spelled.join(", ")
        };
        let (proxy, handler, remedy) = match self.front {
            // nginx passes client headers on too, but the shipped include
            // overwrites both (README: the auth_request endpoint).
            Front::Nginx => return warnings,
            Front::Caddy => (
                "Caddy",
                "forward_auth",
                format!(
                    "drop the client's copies before forward_auth ({})",
                    each(|name| format!("`request_header -{name}`"))
                ),
            ),
            Front::Traefik => (
                "Traefik",
                "ForwardAuth",
                format!(
                    "empty the client's copies before forwardAuth (a `headers` middleware with \
                     customRequestHeaders {})",
                    each(|name| format!("`{name}: \"\"`"))
                ),
            ),
        };
        warnings.push(format!(
            "{} (front {}) is trusted: {proxy} passes every client header on to {handler}, so a \
             client may send its own {} and be any account; remove `trusted` from this \
             listener, or, if {proxy} names the user itself, {remedy}",
            self.address,
            self.front.name(),
            headers.join(" or "),
        ));
        warnings
    }
}

/// The object form of a listener, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenerFields {
    address: ListenAddress,
    #[serde(default)]
    trusted: bool,
    #[serde(default)]
    mode: Option<SocketMode>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    max_connections: Option<ConnectionBudget>,
    #[serde(default)]
    front: Front,
}

impl TryFrom<ListenerFields> for Listener {
    type Error = String;

    fn try_from(fields: ListenerFields) -> Result<Listener, String> {
        let listener = Listener {
            address: fields.address,
            trusted: fields.trusted,
            mode: fields.mode,
            group: fields.group,
            max_connections: fields.max_connections,
            front: fields.front,
        };
        if (listener.mode.is_some() || listener.group.is_some()) && !listener.is_unix() {
            return Err("`mode` and `group` apply to unix sockets only".into());
        }
        Ok(listener)
    }
}

impl<'de> Deserialize<'de> for Listener {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A hand-written visitor rather than `#[serde(untagged)]`: untagged
        // enums replace every inner error with "did not match any variant",
        // and the operator needs to know which value was wrong.
        struct ListenerVisitor;
        impl<'de> Visitor<'de> for ListenerVisitor {
            type Value = Listener;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an address string or an object with `address`")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Listener, E> {
                text.parse().map(Listener::at).map_err(E::custom)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Listener, A::Error> {
                let fields =
                    ListenerFields::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Listener::try_from(fields).map_err(A::Error::custom)
            }
        }
        deserializer.deserialize_any(ListenerVisitor)
    }
}

/// Where one listener binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddress {
    /// A TCP socket address.
    Tcp(std::net::SocketAddr),
    /// A unix socket path.
    Unix(PathBuf),
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddress::Tcp(address) => write!(f, "{address}"),
            ListenAddress::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl FromStr for ListenAddress {
    type Err = String;

    /// `unix:/path` or a TCP socket address (an IP address and a port).
    fn from_str(text: &str) -> Result<ListenAddress, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("`unix:` needs a socket path".into());
            }
            return Ok(ListenAddress::Unix(PathBuf::from(path)));
        }
        text.parse().map(ListenAddress::Tcp).map_err(|_| {
            format!("`{text}` is neither `host:port` (an IP address) nor `unix:/path`")
        })
    }
}

impl<'de> Deserialize<'de> for ListenAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_parsed(deserializer)
    }
}

/// A unix socket's file mode, written as an octal string such as `"0660"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketMode(u32);

impl SocketMode {
    /// The permission bits (at most `0o777`).
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl FromStr for SocketMode {
    type Err = String;

    fn from_str(text: &str) -> Result<SocketMode, String> {
        u32::from_str_radix(text, 8)
            .ok()
            .filter(|mode| *mode <= 0o777)
            .map(SocketMode)
            .ok_or_else(|| format!("`{text}` is not an octal file mode such as \"0660\""))
    }
}

impl<'de> Deserialize<'de> for SocketMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_parsed(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_modes_parse_once() {
        assert_eq!(
            "[::1]:5001".parse::<ListenAddress>().unwrap().to_string(),
            "[::1]:5001"
        );
        assert_eq!(
            "unix:/run/r.sock".parse::<ListenAddress>(),
            Ok(ListenAddress::Unix("/run/r.sock".into()))
        );
        assert!("unix:".parse::<ListenAddress>().is_err());
        assert!("localhost:80".parse::<ListenAddress>().is_err());
        assert_eq!("0660".parse::<SocketMode>().unwrap().bits(), 0o660);
        assert!("0800".parse::<SocketMode>().is_err());
        assert!("1777".parse::<SocketMode>().is_err());
    }

    fn listener(json: &str) -> Listener {
        serde_json::from_str(json).unwrap()
    }

    fn naming_users(groups: bool) -> AuthSettings {
        AuthSettings {
            trusted_user_header: Some(HeaderField::from_static("X-Authenticated-User")),
            trusted_groups_header: groups
                .then(|| HeaderField::from_static("X-Authenticated-Groups")),
            ..AuthSettings::default()
        }
    }

    #[test]
    fn a_trusted_caddy_or_traefik_listener_that_believes_a_user_header_is_warned_about() {
        let caddy =
            listener(r#"{"address": "unix:/run/caddy.sock", "front": "caddy", "trusted": true}"#);
        assert_eq!(
            caddy.trust_warnings(&naming_users(true)),
            [
                "unix:/run/caddy.sock (front caddy) is trusted: Caddy passes every client header \
                 on to forward_auth, so a client may send its own X-Authenticated-User or \
                 X-Authenticated-Groups and be any account; remove `trusted` from this \
                 listener, or, if Caddy names the user itself, drop the client's copies before \
                 forward_auth (`request_header -X-Authenticated-User`, \
                 `request_header -X-Authenticated-Groups`)"
            ]
        );

        // On TCP, the port's own warning comes first.
        let traefik =
            listener(r#"{"address": "127.0.0.1:5002", "front": "traefik", "trusted": true}"#);
        let warnings = traefik.trust_warnings(&naming_users(false));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("127.0.0.1:5002 is trusted: anyone who can reach"));
        assert_eq!(
            warnings[1],
            "127.0.0.1:5002 (front traefik) is trusted: Traefik passes every client header on \
             to ForwardAuth, so a client may send its own X-Authenticated-User and be any \
             account; remove `trusted` from this listener, or, if Traefik names the user \
             itself, empty the client's copies before forwardAuth (a `headers` middleware with \
             customRequestHeaders `X-Authenticated-User: \"\"`)"
        );
    }

    #[test]
    fn trust_that_names_no_user_or_sits_behind_nginx_is_quiet_on_a_unix_socket() {
        let quiet = [
            // Trust picks only the client address from X-Forwarded-For,
            // which Caddy and Traefik set themselves.
            (
                r#"{"address": "unix:/c.sock", "front": "caddy", "trusted": true}"#,
                false,
            ),
            (r#"{"address": "unix:/c.sock", "front": "caddy"}"#, true),
            // The shipped nginx include overwrites the user header.
            (r#"{"address": "unix:/n.sock", "trusted": true}"#, true),
        ];
        for (json, names_users) in quiet {
            let auth = if names_users {
                naming_users(true)
            } else {
                AuthSettings::default()
            };
            assert!(listener(json).trust_warnings(&auth).is_empty(), "{json}");
        }
    }

    #[test]
    fn a_trusted_tcp_port_is_warned_about_whatever_its_front() {
        let nginx = listener(r#"{"address": "127.0.0.1:5002", "trusted": true}"#);
        assert_eq!(
            nginx.trust_warnings(&AuthSettings::default()),
            [
                "127.0.0.1:5002 is trusted: anyone who can reach this TCP port may name any \
                 account in auth.trusted_user_header; make sure only the front proxy can"
            ]
        );
        assert!(listener(r#""127.0.0.1:5002""#)
            .trust_warnings(&naming_users(true))
            .is_empty());
    }

    #[test]
    fn both_forms_deserialize_and_errors_keep_their_reason() {
        let listeners: Vec<Listener> = serde_json::from_str(
            r#"["127.0.0.1:1", {"address": "unix:/r.sock", "trusted": true, "mode": "0600"}]"#,
        )
        .unwrap();
        assert_eq!(
            listeners[0],
            Listener::at(ListenAddress::Tcp("127.0.0.1:1".parse().unwrap()))
        );
        assert!(listeners[1].trusted && listeners[1].is_unix());
        assert_eq!(listeners[1].mode.map(SocketMode::bits), Some(0o600));

        for (text, reason) in [
            (r#""localhost:80""#, "neither `host:port`"),
            (
                r#"{"address": "127.0.0.1:1", "mode": "0660"}"#,
                "unix sockets only",
            ),
            (r#"{"address": "unix:/r", "mode": "rw"}"#, "octal file mode"),
            (
                r#"{"address": "unix:/r", "bogus": 1}"#,
                "unknown field `bogus`",
            ),
        ] {
            let message = serde_json::from_str::<Listener>(text)
                .unwrap_err()
                .to_string();
            assert!(message.contains(reason), "{text}: {message}");
        }
    }
}
