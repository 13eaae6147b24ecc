//! Client address behind trusted proxies (`gatehouse_http::TrustedProxies`): the proxy
//! list comes from config, `X-Forwarded-For` from anyone. Input: `proxies \n peer \n
//! X-Forwarded-For values, one per line`, proxies separated by spaces. Checked against a
//! plain reference model: the same entries are accepted, and the same address is chosen
//! (the peer unless it is trusted, else the right-most forwarded hop that is not, the walk
//! ending at the first hop that is not a bare address).
#![no_main]

use axum::http::{HeaderMap, HeaderValue};
use gatehouse_fuzz::fields;
use gatehouse_http::TrustedProxies;
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;

/// An address as 128 bits plus its family, for prefix checks.
fn bits(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(a) => (true, u128::from(u32::from(a)) << 96),
        IpAddr::V6(a) => (false, u128::from(a)),
    }
}

fn model_parse(entries: &[String]) -> Option<Vec<(IpAddr, u32)>> {
    entries
        .iter()
        .map(|e| {
            let (a, l) = match e.split_once('/') {
                Some((a, l)) => (a, Some(l)),
                None => (e.as_str(), None),
            };
            let ip: IpAddr = a.trim().parse().ok()?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len = match l {
                Some(l) => l
                    .trim()
                    .parse::<u8>()
                    .ok()
                    .map(u32::from)
                    .filter(|l| *l <= max)?,
                None => max,
            };
            Some((ip, len))
        })
        .collect()
}

fn model_trusted(nets: &[(IpAddr, u32)], ip: IpAddr) -> bool {
    let (v4, x) = bits(ip);
    nets.iter().any(|(n, len)| {
        let (nv4, y) = bits(*n);
        let mask = if *len == 0 {
            0
        } else {
            u128::MAX << (128 - len)
        };
        nv4 == v4 && (x & mask) == (y & mask)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let f = fields(text, 3);
    let entries: Vec<String> = f
        .first()
        .copied()
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let parsed = TrustedProxies::parse(&entries);
    let model = model_parse(&entries);
    assert_eq!(parsed.is_ok(), model.is_some(), "{entries:?}");
    let (Ok(proxies), Some(nets)) = (parsed, model) else {
        return;
    };
    let Some(Ok(peer)) = f.get(1).map(|p| p.trim().parse::<IpAddr>()) else {
        return;
    };
    let mut headers = HeaderMap::new();
    for line in f.get(2).copied().unwrap_or_default().split('\n') {
        if let Ok(v) = HeaderValue::from_str(line) {
            headers.append("x-forwarded-for", v);
        }
    }
    let got = proxies.client_ip(peer, &headers);
    let expected = if model_trusted(&nets, peer) {
        // Walk the hops from the right. A hop that is not a bare address ends the walk (the
        // client is then the last trusted hop seen); the first untrusted address is the
        // client; if every hop is trusted, the left-most one is.
        let values: Vec<String> = headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.to_str().unwrap_or("").to_string())
            .collect();
        let hops: Vec<&str> = values.iter().flat_map(|v| v.split(',')).collect();
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            client = ip;
            if !model_trusted(&nets, ip) {
                break;
            }
        }
        client
    } else {
        peer
    };
    assert_eq!(got, expected, "proxies {entries:?}, peer {peer}");
});
