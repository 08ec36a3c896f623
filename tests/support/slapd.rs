//! A real OpenLDAP `slapd` (Debian 2.5) for the LDAP tests: its own
//! `slapd.conf` and mdb database in the harness's temp dir, the `memberof`
//! overlay, a test CA and server certificate (rcgen) for StartTLS and
//! LDAPS, random loopback ports, and entries seeded with `ldapadd` after
//! start (the overlay only sees entries added through the protocol).
//! Stopped by PID with the rest of the [`Harness`].

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::{free_ports, require, Harness};

/// The suffix of the test directory.
pub const LDAP_BASE: &str = "dc=example,dc=org";
/// The service account regauth binds as.
pub const LDAP_SERVICE_DN: &str = "cn=regauth,ou=services,dc=example,dc=org";
/// Its password (also in [`Slapd::bind_password_file`]).
pub const LDAP_SERVICE_PASSWORD: &str = "service-secret";
const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
const ADMIN_PASSWORD: &str = "admin-secret";

/// A running slapd.
pub struct Slapd {
    /// The child's name in the harness.
    pub name: String,
    /// `ldap://127.0.0.1:PORT` (plain, or StartTLS).
    pub url: String,
    /// `ldaps://127.0.0.1:PORT`.
    pub ldaps_url: String,
    /// The test CA's certificate (PEM), which signed the server's.
    pub ca_file: PathBuf,
    /// A file with [`LDAP_SERVICE_PASSWORD`].
    pub bind_password_file: PathBuf,
}

/// A person to seed.
pub struct LdapUser<'a> {
    /// `uid`, as the directory spells it.
    pub uid: &'a str,
    /// The password.
    pub password: &'a str,
    /// Names (`cn`) of the groups of `ou=groups` the user is a member of.
    pub groups: &'a [&'a str],
}

/// Starts slapd as the child `name` with the base entries and the service
/// account; add people with [`Slapd::add_users`].
pub fn start_slapd(h: &mut Harness, name: &str) -> Slapd {
    let slapd = require("slapd");
    let dir = h.mkdir(&format!("{name}-data"));
    let (ca_pem, cert_pem, key_pem) = test_ca_and_server_certificate();
    let ca_file = h.write(&format!("{name}-tls/ca.pem"), &ca_pem);
    let cert_file = h.write(&format!("{name}-tls/server.pem"), &cert_pem);
    let key_file = h.write(&format!("{name}-tls/server.key"), &key_pem);
    let conf = format!(
        "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile {dir}/slapd.pid
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
database mdb
maxsize 16777216
suffix \"{LDAP_BASE}\"
rootdn \"{ADMIN_DN}\"
rootpw {ADMIN_PASSWORD}
directory {dir}
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
access to attrs=userPassword by anonymous auth by self write by * none
access to * by users read by * none
",
        dir = dir.display(),
        ca = ca_file.display(),
        cert = cert_file.display(),
        key = key_file.display(),
    );
    let conf_file = h.write(&format!("{name}.conf"), conf);
    let check = Command::new(require("slaptest"))
        .args(["-u", "-f"])
        .arg(&conf_file)
        .output()
        .expect("run slaptest");
    assert!(
        check.status.success(),
        "slaptest refused {}: {}",
        conf_file.display(),
        String::from_utf8_lossy(&check.stderr)
    );

    let [port, tls_port] = free_ports::<2>();
    let url = format!("ldap://127.0.0.1:{port}");
    let ldaps_url = format!("ldaps://127.0.0.1:{tls_port}");
    let mut cmd = Command::new(slapd);
    cmd.args(["-d", "stats", "-f"])
        .arg(&conf_file)
        .arg("-h")
        .arg(format!("{url}/ {ldaps_url}/"));
    h.spawn(name, cmd);
    let bind_password_file = h.write(&format!("{name}-service.secret"), LDAP_SERVICE_PASSWORD);
    let server = Slapd {
        name: name.to_owned(),
        url,
        ldaps_url,
        ca_file,
        bind_password_file,
    };
    h.wait_until(name, "slapd answering", Duration::from_secs(20), || {
        ldap_tool("ldapwhoami", &server.url, &[]).is_ok()
    });
    server
        .ldapadd(&format!(
            "dn: {LDAP_BASE}
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,{LDAP_BASE}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{LDAP_BASE}
objectClass: organizationalUnit
ou: groups

dn: ou=services,{LDAP_BASE}
objectClass: organizationalUnit
ou: services

dn: {LDAP_SERVICE_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: regauth
userPassword: {LDAP_SERVICE_PASSWORD}
"
        ))
        .unwrap_or_else(|e| panic!("seeding {name}: {e}"));
    server
}

impl Slapd {
    /// Adds people, then one `groupOfNames` per group naming its members
    /// (after the people, so the overlay writes their `memberOf`).
    pub fn add_users(&self, users: &[LdapUser<'_>]) {
        let mut ldif = String::new();
        for user in users {
            ldif.push_str(&format!(
                "dn: uid={uid},ou=people,{LDAP_BASE}
objectClass: inetOrgPerson
uid: {uid}
cn: {uid}
sn: {uid}
userPassword: {password}

",
                uid = user.uid,
                password = user.password
            ));
        }
        let mut groups: Vec<&str> = users
            .iter()
            .flat_map(|u| u.groups.iter().copied())
            .collect();
        groups.sort_unstable();
        groups.dedup();
        for group in groups {
            ldif.push_str(&format!(
                "dn: cn={group},ou=groups,{LDAP_BASE}\nobjectClass: groupOfNames\ncn: {group}\n"
            ));
            for user in users.iter().filter(|u| u.groups.contains(&group)) {
                ldif.push_str(&format!("member: uid={},ou=people,{LDAP_BASE}\n", user.uid));
            }
            ldif.push('\n');
        }
        self.ldapadd(&ldif)
            .unwrap_or_else(|e| panic!("seeding users into {}: {e}", self.name));
    }

    /// Runs `ldapadd` as the directory's administrator.
    pub fn ldapadd(&self, ldif: &str) -> Result<(), String> {
        use std::io::Write as _;
        let mut child = Command::new(require("ldapadd"))
            .args(["-x", "-H", &self.url, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(ldif.as_bytes())
            .map_err(|e| e.to_string())?;
        let output = child.wait_with_output().map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// The `memberOf` values slapd holds for a user, read as the
    /// administrator (proof that the overlay is at work).
    pub fn member_of(&self, uid: &str) -> Vec<String> {
        let output = ldap_tool(
            "ldapsearch",
            &self.url,
            &[
                "-D",
                ADMIN_DN,
                "-w",
                ADMIN_PASSWORD,
                "-LLL",
                "-b",
                &format!("uid={uid},ou=people,{LDAP_BASE}"),
                "memberOf",
            ],
        )
        .unwrap_or_else(|e| panic!("ldapsearch: {e}"));
        output
            .lines()
            .filter_map(|line| line.strip_prefix("memberOf: "))
            .map(str::to_owned)
            .collect()
    }
}

fn ldap_tool(tool: &str, url: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(require(tool))
        .args(["-x", "-H", url])
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// A throwaway CA and a server certificate it signed for `localhost` and
/// `127.0.0.1`, with the extensions webpki insists on (serverAuth, no CA
/// flag on the leaf): (CA PEM, server certificate PEM, server key PEM).
pub fn test_ca_and_server_certificate() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "regauth test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("self-sign the CA");

    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().expect("server key");
    let cert = params
        .signed_by(&key, &ca)
        .expect("sign the server certificate");
    (ca.pem(), cert.pem(), key.serialize_pem())
}
