//! Which address a request comes from. On an untrusted listener it is the
//! TCP peer, whatever the request says. On a trusted listener (the front
//! proxy's) it is the last `X-Forwarded-For` entry: the one the proxy
//! appended (nginx's `$proxy_add_x_forwarded_for`). Every entry before it
//! came from the client and proves nothing.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;

use super::Connection;
use crate::client_address::ClientAddress;

/// The client address of a request that came in on `connection`.
pub fn client_address(connection: &Connection, headers: &HeaderMap) -> ClientAddress {
    let forwarded = connection
        .trusted
        .then(|| last_forwarded_for(headers))
        .flatten();
    forwarded.map_or_else(|| peer_address(&connection.peer), ClientAddress::ip)
}

/// The last entry of the last `X-Forwarded-For` line (several lines read as
/// one list, joined in order), if it is an IP address. nginx appends
/// `$remote_addr`, which is always a bare address (or `unix:` when nginx
/// itself listens on a unix socket: then the peer is the best there is).
fn last_forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let line = headers.get_all("x-forwarded-for").iter().next_back()?;
    let entry = line.to_str().ok()?.rsplit(',').next()?.trim();
    entry.parse().ok()
}

/// The listener formats TCP peers as `ip:port` and unix peers as `unix`.
fn peer_address(peer: &str) -> ClientAddress {
    peer.parse::<SocketAddr>()
        .map_or(ClientAddress::Local, |address| {
            ClientAddress::ip(address.ip())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn connection(peer: &str, trusted: bool) -> Connection {
        Connection {
            peer: peer.to_owned(),
            trusted,
            front: Default::default(),
        }
    }

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
        }
        headers
    }

    #[test]
    fn trusted_listeners_believe_the_entry_the_proxy_appended() {
        let nginx = connection("unix", true);
        // The client sent "203.0.113.1" itself; nginx appended its peer.
        let forged = headers(&["203.0.113.1, 198.51.100.20"]);
        assert_eq!(client_address(&nginx, &forged).to_string(), "198.51.100.20");
        let two_lines = headers(&["203.0.113.1", "10.0.0.1, 2001:db8::7"]);
        assert_eq!(
            client_address(&nginx, &two_lines).to_string(),
            "2001:db8::7"
        );
        let one = headers(&["192.0.2.5"]);
        assert_eq!(client_address(&nginx, &one).to_string(), "192.0.2.5");
    }

    #[test]
    fn without_a_readable_last_entry_the_peer_counts() {
        let nginx = connection("unix", true);
        assert_eq!(
            client_address(&nginx, &HeaderMap::new()),
            ClientAddress::Local
        );
        for unreadable in ["192.0.2.5, unix:", "192.0.2.5, ", "192.0.2.5,garbage"] {
            let address = client_address(&nginx, &headers(&[unreadable]));
            assert_eq!(address, ClientAddress::Local, "{unreadable}");
        }
        let tcp_proxy = connection("127.0.0.1:40000", true);
        let address = client_address(&tcp_proxy, &headers(&["nonsense"]));
        assert_eq!(address.to_string(), "127.0.0.1");
    }

    #[test]
    fn untrusted_listeners_ignore_the_header() {
        let direct = connection("[2001:db8::1]:5555", false);
        let address = client_address(&direct, &headers(&["192.0.2.5"]));
        assert_eq!(address.to_string(), "2001:db8::1");
        let local = connection("unix", false);
        assert_eq!(
            client_address(&local, &headers(&["192.0.2.5"])),
            ClientAddress::Local
        );
    }
}
