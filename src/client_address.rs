//! Who is asking, as far as the network can tell: the address that the
//! login limiter and the bcrypt queue count against and that the audit log
//! records. Reading it from a request is the HTTP layer's job
//! (`http::client`); this module only says what an address is and which
//! addresses count as one client.

use std::fmt;
use std::net::IpAddr;

/// The address a request comes from: the TCP peer, or, on a trusted
/// listener behind a front proxy, the address that proxy saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientAddress {
    /// An IP address (IPv4-mapped IPv6 addresses are stored as IPv4).
    Ip(IpAddr),
    /// A peer on a unix socket that named no client: a local process, or a
    /// front proxy that did not forward the address.
    Local,
}

impl ClientAddress {
    /// The address of an IP peer, with IPv4-mapped IPv6 (`::ffff:a.b.c.d`,
    /// as dual-stack sockets report IPv4 peers) turned back into IPv4 so that
    /// one client has one spelling.
    pub fn ip(address: IpAddr) -> ClientAddress {
        ClientAddress::Ip(address.to_canonical())
    }

    /// The group this address is counted in. An IPv6 host usually holds a
    /// whole /64 and picks new addresses in it at will (privacy extensions),
    /// so IPv6 addresses count per /64; IPv4 addresses count one by one.
    pub fn group(self) -> AddressGroup {
        match self {
            ClientAddress::Ip(IpAddr::V4(v4)) => AddressGroup::V4(v4.octets()),
            ClientAddress::Ip(IpAddr::V6(v6)) => {
                let mut prefix = [0u8; 8];
                prefix.copy_from_slice(&v6.octets()[..8]);
                AddressGroup::V6Prefix(prefix)
            }
            ClientAddress::Local => AddressGroup::Local,
        }
    }
}

impl fmt::Display for ClientAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAddress::Ip(address) => address.fmt(f),
            ClientAddress::Local => f.write_str("local"),
        }
    }
}

/// Addresses that count as one client: an IPv4 address, an IPv6 /64, or
/// every local peer together. Small and `Copy`, so per-client tables stay
/// small whatever the requests carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressGroup {
    /// One IPv4 address.
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6Prefix([u8; 8]),
    /// Unix-socket peers without a forwarded address.
    Local,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ClientAddress {
        ClientAddress::ip(text.parse().unwrap())
    }

    #[test]
    fn ipv6_counts_per_slash_64_and_ipv4_per_address() {
        assert_eq!(
            parse("2001:db8:1:2::1").group(),
            parse("2001:db8:1:2:ffff::9").group()
        );
        assert_ne!(
            parse("2001:db8:1:2::1").group(),
            parse("2001:db8:1:3::1").group()
        );
        assert_ne!(parse("192.0.2.1").group(), parse("192.0.2.2").group());
        assert_ne!(parse("192.0.2.1").group(), ClientAddress::Local.group());
    }

    #[test]
    fn mapped_ipv4_is_ipv4() {
        assert_eq!(parse("::ffff:192.0.2.7"), parse("192.0.2.7"));
        assert_eq!(parse("::ffff:192.0.2.7").to_string(), "192.0.2.7");
        assert_eq!(ClientAddress::Local.to_string(), "local");
    }
}
