//! Client IP: the socket peer, unless the peer is a trusted proxy; then the right-most
//! address in `X-Forwarded-For` that is not itself a trusted proxy. Only the hops a trusted
//! proxy appended are believed, so the walk from the right stops at the first hop that is
//! not a plain address: skipping it would reach entries the client wrote itself.

use axum::http::HeaderMap;
use std::net::IpAddr;

/// Proxies whose `X-Forwarded-For` is believed, as addresses or CIDR blocks.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses entries like `10.0.0.1`, `10.0.0.0/8`, `::1`.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut out = Vec::new();
        for e in entries {
            let (addr, len) = match e.split_once('/') {
                Some((a, l)) => (a, Some(l)),
                None => (e.as_str(), None),
            };
            let ip: IpAddr = addr
                .trim()
                .parse()
                .map_err(|_| format!("not an IP address: {e}"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len = match len {
                Some(l) => l
                    .trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|l| *l <= max)
                    .ok_or(format!("bad prefix: {e}"))?,
                None => max,
            };
            out.push((ip, len));
        }
        Ok(Self(out))
    }

    /// True when `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|(net, len)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => prefix_eq(&n.octets(), &i.octets(), *len),
            (IpAddr::V6(n), IpAddr::V6(i)) => prefix_eq(&n.octets(), &i.octets(), *len),
            _ => false,
        })
    }

    /// The client's address for rate limits and audit.
    ///
    /// Walks `X-Forwarded-For` from the right while the hops are trusted proxies. The first
    /// untrusted hop is the client. A hop that is not a plain IP address (`ip:port`,
    /// `[v6]:port`, `unknown`, empty) ends the walk: the client is then the last trusted
    /// hop itself (the peer, when it is the right-most entry), an address no client chose.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let values: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.to_str().unwrap_or(""))
            .collect();
        let mut client = peer;
        for hop in values.iter().rev().flat_map(|v| v.rsplit(',')) {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

fn prefix_eq(a: &[u8], b: &[u8], len: u8) -> bool {
    let full = usize::from(len / 8);
    let rest = len % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a.get(full)
        .zip(b.get(full))
        .is_some_and(|(x, y)| x & mask == y & mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h
    }

    #[test]
    fn untrusted_peer_cannot_spoof_its_address() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(t.client_ip(peer, &xff("1.2.3.4")), peer);
    }

    #[test]
    fn trusted_proxy_forwards_the_rightmost_untrusted_hop() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        let got = t.client_ip(peer, &xff("6.6.6.6, 198.51.100.7, 10.9.9.9"));
        assert_eq!(got, "198.51.100.7".parse::<IpAddr>().unwrap());
    }

    fn trusted() -> (TrustedProxies, IpAddr) {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        (t, "10.1.2.3".parse().unwrap())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_hop_that_does_not_parse_ends_the_walk_at_the_last_trusted_hop() {
        let (t, peer) = trusted();
        // Each time the attacker's own entry (6.6.6.6) sits left of a hop that is not a
        // plain address; it must never become the client.
        for (header, want) in [
            ("6.6.6.6, 198.51.100.7:4711", peer),
            ("6.6.6.6, [2001:db8::7]:443", peer),
            ("6.6.6.6, unknown", peer),
            ("6.6.6.6, ", peer),
            ("6.6.6.6, unknown, 10.9.9.9", ip("10.9.9.9")),
            (
                "6.6.6.6, 198.51.100.7:4711, 10.9.9.9, 10.8.8.8",
                ip("10.9.9.9"),
            ),
        ] {
            assert_eq!(t.client_ip(peer, &xff(header)), want, "{header}");
        }
    }

    #[test]
    fn several_headers_are_walked_as_one_list_from_the_right() {
        let (t, peer) = trusted();
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "6.6.6.6".parse().unwrap());
        h.append("x-forwarded-for", "unknown".parse().unwrap());
        assert_eq!(t.client_ip(peer, &h), peer);
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "6.6.6.6, 198.51.100.7".parse().unwrap());
        h.append("x-forwarded-for", "10.9.9.9".parse().unwrap());
        assert_eq!(t.client_ip(peer, &h), ip("198.51.100.7"));
    }

    #[test]
    fn an_ipv6_client_behind_a_trusted_proxy_is_found() {
        let (t, peer) = trusted();
        assert_eq!(
            t.client_ip(peer, &xff("2001:db8::7, 10.9.9.9")),
            ip("2001:db8::7")
        );
    }

    #[test]
    fn only_trusted_hops_means_the_left_most_of_them() {
        let (t, peer) = trusted();
        assert_eq!(
            t.client_ip(peer, &xff("10.7.7.7, 10.9.9.9")),
            ip("10.7.7.7")
        );
        assert_eq!(t.client_ip(peer, &HeaderMap::new()), peer);
    }

    #[test]
    fn bad_entries_are_rejected() {
        assert!(TrustedProxies::parse(&["nope".into()]).is_err());
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
    }
}
