//! Route updates: what the collector stores, the built-in sample feed, and the newline-delimited
//! JSON that `--listen` accepts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cidr::IpCidr;
use serde::Deserialize;

/// One prefix announced or withdrawn by a BGP peer, as a router reported it over BMP.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RouteUpdate {
    pub(crate) time: SystemTime,
    /// The BMP speaker that reported it.
    pub(crate) router: IpAddr,
    pub(crate) peer_address: IpAddr,
    pub(crate) peer_as: u32,
    pub(crate) prefix: IpCidr,
    pub(crate) next_hop: Option<IpAddr>,
    pub(crate) as_path: Vec<u32>,
    pub(crate) communities: Vec<String>,
    pub(crate) med: Option<u32>,
    pub(crate) local_pref: Option<u32>,
    pub(crate) withdrawn: bool,
}

impl RouteUpdate {
    /// `ipv4` or `ipv6`, from the prefix.
    pub(crate) fn family(&self) -> &'static str {
        if self.prefix.is_ipv4() {
            "ipv4"
        } else {
            "ipv6"
        }
    }

    /// The AS that originated an announced prefix: the last of its AS path.
    pub(crate) fn origin_as(&self) -> Option<u32> {
        if self.withdrawn {
            None
        } else {
            self.as_path.last().copied()
        }
    }
}

/// How many updates [`sample`] makes.
pub(crate) const SAMPLE_SIZE: usize = 500;

/// `(router, peer address, peer AS)` of the sample feed's BGP sessions (documentation ranges).
const SAMPLE_PEERS: [(IpAddr, IpAddr, u32); 4] = [
    (
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)),
        64500,
    ),
    (
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 0x11)),
        64500,
    ),
    (
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 21)),
        64510,
    ),
    (
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 0x21)),
        64511,
    ),
];
const TRANSIT_ASES: [u32; 8] = [3356, 1299, 174, 2914, 6939, 6453, 3257, 6762];
const ORIGIN_ASES: [u32; 12] = [
    13335, 15169, 16509, 32934, 8075, 20940, 2906, 36183, 54113, 714, 46489, 14618,
];

/// A deterministic feed of [`SAMPLE_SIZE`] updates from four peers on two routers, one every
/// 100 ms up to `now`: IPv4 and IPv6 announcements with AS paths (some prepended), standard and
/// large communities, MED and LOCAL_PREF, and every ninth update (each peer in turn) a
/// withdrawal of an earlier announcement.
pub(crate) fn sample(now: SystemTime) -> Vec<RouteUpdate> {
    let mut rng = XorShift(0x5eed_b3d9_0c01_1ec7);
    let start = now - Duration::from_millis(100 * SAMPLE_SIZE as u64);
    let mut announced: [Vec<IpCidr>; SAMPLE_PEERS.len()] = Default::default();
    (0..SAMPLE_SIZE)
        .map(|i| {
            let peer = i % SAMPLE_PEERS.len();
            let (router, peer_address, peer_as) = SAMPLE_PEERS[peer];
            let time = start + Duration::from_millis(100 * i as u64);
            if i % 9 == 8 && !announced[peer].is_empty() {
                let earlier = rng.below(announced[peer].len());
                return RouteUpdate {
                    time,
                    router,
                    peer_address,
                    peer_as,
                    prefix: announced[peer].swap_remove(earlier),
                    next_hop: None,
                    as_path: Vec::new(),
                    communities: Vec::new(),
                    med: None,
                    local_pref: None,
                    withdrawn: true,
                };
            }
            let prefix = if peer_address.is_ipv4() {
                rng.ipv4_prefix()
            } else {
                rng.ipv6_prefix()
            };
            announced[peer].push(prefix);
            let mut as_path = vec![peer_as];
            as_path.extend((0..=rng.below(2)).map(|_| TRANSIT_ASES[rng.below(TRANSIT_ASES.len())]));
            let origin = ORIGIN_ASES[rng.below(ORIGIN_ASES.len())];
            as_path.extend(std::iter::repeat_n(origin, 1 + rng.below(4) / 3));
            let mut communities = vec![format!("65000:{}", 100 * (1 + rng.below(3)))];
            if rng.below(4) == 0 {
                communities.push(format!("{peer_as}:{}", 1000 + rng.below(20)));
            }
            if rng.below(8) == 0 {
                communities.push(format!("{peer_as}:1:{}", rng.below(100)));
            }
            RouteUpdate {
                time,
                router,
                peer_address,
                peer_as,
                prefix,
                next_hop: Some(peer_address),
                as_path,
                communities,
                med: (rng.below(3) == 0).then(|| rng.below(100) as u32),
                local_pref: (rng.below(2) == 0).then(|| 100 * (1 + rng.below(2) as u32)),
                withdrawn: false,
            }
        })
        .collect()
}

/// A small deterministic generator (xorshift64), enough for sample data.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn ipv4_prefix(&mut self) -> IpCidr {
        const FIRST_OCTETS: [u32; 12] = [23, 31, 45, 62, 80, 91, 104, 151, 185, 193, 203, 212];
        let len = 16 + self.below(9) as u8;
        let bits = FIRST_OCTETS[self.below(FIRST_OCTETS.len())] << 24 | self.next() as u32 >> 8;
        let mask = u32::MAX << (32 - len);
        IpCidr::new(IpAddr::V4(Ipv4Addr::from(bits & mask)), len).expect("host bits are masked")
    }

    fn ipv6_prefix(&mut self) -> IpCidr {
        const FIRST_GROUPS: [u128; 6] = [0x2001, 0x2400, 0x2600, 0x2a00, 0x2a02, 0x2c0f];
        let len = [32, 36, 40, 44, 48][self.below(5)];
        let bits = FIRST_GROUPS[self.below(FIRST_GROUPS.len())] << 112
            | u128::from(self.next() as u32) << 80;
        let mask = u128::MAX << (128 - len);
        IpCidr::new(IpAddr::V6(Ipv6Addr::from(bits & mask)), len).expect("host bits are masked")
    }
}

/// A route update as a line of the `--listen` feed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireUpdate {
    /// Unix time in seconds (fractions allowed); default: when the line arrived.
    time: Option<f64>,
    /// Default: the address the feed connected from.
    router: Option<IpAddr>,
    peer_address: IpAddr,
    peer_as: u32,
    prefix: String,
    next_hop: Option<IpAddr>,
    #[serde(default)]
    as_path: Vec<u32>,
    #[serde(default)]
    communities: Vec<String>,
    med: Option<u32>,
    local_pref: Option<u32>,
    #[serde(default)]
    withdrawn: bool,
}

/// The latest time accepted: the end of year 9999.
const MAX_UNIX_TIME: f64 = 253_402_300_799.0;

/// Parses one line of the `--listen` feed, e.g.
/// `{"peer_address":"192.0.2.11","peer_as":64500,"prefix":"203.0.113.0/24","next_hop":"192.0.2.11","as_path":[64500,3356,13335],"communities":["65000:100"]}`;
/// `router` and `now` fill in a missing `router` and `time`.
pub(crate) fn parse_line(
    line: &str,
    router: IpAddr,
    now: SystemTime,
) -> Result<RouteUpdate, String> {
    let wire: WireUpdate = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let prefix: IpCidr = wire
        .prefix
        .parse()
        .map_err(|e| format!("prefix `{}`: {e}", wire.prefix))?;
    let time = match wire.time {
        None => now,
        Some(seconds) if (0.0..=MAX_UNIX_TIME).contains(&seconds) => {
            UNIX_EPOCH + Duration::from_secs_f64(seconds)
        }
        Some(seconds) => {
            return Err(format!(
                "time {seconds} is not a Unix time in seconds between 0 and {MAX_UNIX_TIME}"
            ))
        }
    };
    if !wire.withdrawn && wire.next_hop.is_none() {
        return Err("an announcement needs `next_hop` (or set `\"withdrawn\": true`)".to_owned());
    }
    if let Some(bad) = wire.communities.iter().find(|c| !is_community(c)) {
        return Err(format!(
            "community `{bad}` is neither `ASN:VALUE` (16-bit numbers) nor a large community `ASN:X:Y` (32-bit numbers)"
        ));
    }
    Ok(RouteUpdate {
        time,
        router: wire.router.unwrap_or(router),
        peer_address: wire.peer_address,
        peer_as: wire.peer_as,
        prefix,
        next_hop: wire.next_hop,
        as_path: wire.as_path,
        communities: wire.communities,
        med: wire.med,
        local_pref: wire.local_pref,
        withdrawn: wire.withdrawn,
    })
}

/// `ASN:VALUE` (RFC 1997) or `ASN:X:Y` (RFC 8092), in decimal.
fn is_community(text: &str) -> bool {
    let parts: Vec<&str> = text.split(':').collect();
    let decimal = |part: &&str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    match parts.len() {
        2 => parts.iter().all(|p| decimal(p) && p.parse::<u16>().is_ok()),
        3 => parts.iter().all(|p| decimal(p) && p.parse::<u32>().is_ok()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn sample_is_deterministic_and_varied() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let feed = sample(now);
        assert_eq!(feed, sample(now));
        assert_eq!(feed.len(), SAMPLE_SIZE);
        assert!(feed.iter().any(|u| u.family() == "ipv4"));
        assert!(feed.iter().any(|u| u.family() == "ipv6"));
        let withdrawals = feed.iter().filter(|u| u.withdrawn).count();
        assert!((50..=60).contains(&withdrawals), "{withdrawals}");
        for family in ["ipv4", "ipv6"] {
            assert!(feed.iter().any(|u| u.withdrawn && u.family() == family));
        }
        assert!(feed
            .iter()
            .all(|u| u.communities.iter().all(|c| is_community(c))));
        assert!(feed.iter().all(|u| u.time <= now));
        assert!(feed
            .iter()
            .all(|u| u.withdrawn || u.as_path.first() == Some(&u.peer_as)));
    }

    #[test]
    fn a_full_line_parses() {
        let update = parse_line(
            r#"{"time":1700000000.5,"router":"192.0.2.1","peer_address":"2001:db8::11","peer_as":64500,"prefix":"2a00:1450::/32","next_hop":"2001:db8::11","as_path":[64500,15169],"communities":["65000:100","64500:1:2"],"med":10,"local_pref":100}"#,
            ROUTER,
            UNIX_EPOCH,
        )
        .unwrap();
        assert_eq!(
            update.time,
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_500)
        );
        assert_eq!(update.router, "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(update.family(), "ipv6");
        assert_eq!(update.origin_as(), Some(15169));
        assert_eq!(update.med, Some(10));
    }

    #[test]
    fn defaults_fill_in_a_withdrawal() {
        let now = UNIX_EPOCH + Duration::from_secs(5);
        let update = parse_line(
            r#"{"peer_address":"192.0.2.11","peer_as":64500,"prefix":"203.0.113.0/24","withdrawn":true}"#,
            ROUTER,
            now,
        )
        .unwrap();
        assert_eq!((update.time, update.router), (now, ROUTER));
        assert_eq!(update.origin_as(), None);
        assert!(update.as_path.is_empty() && update.communities.is_empty());
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let cases = [
            ("not json", "expected"),
            (
                r#"{"peer_as":1,"prefix":"10.0.0.0/8","next_hop":"10.0.0.1"}"#,
                "peer_address",
            ),
            (
                r#"{"peer_address":"10.0.0.1","peer_as":1,"prefix":"10.0.0.1/8","next_hop":"10.0.0.1"}"#,
                "prefix `10.0.0.1/8`",
            ),
            (
                r#"{"peer_address":"10.0.0.1","peer_as":1,"prefix":"10.0.0.0/8"}"#,
                "next_hop",
            ),
            (
                r#"{"peer_address":"10.0.0.1","peer_as":1,"prefix":"10.0.0.0/8","next_hop":"10.0.0.1","communities":["65000:70000"]}"#,
                "community `65000:70000`",
            ),
            (
                r#"{"peer_address":"10.0.0.1","peer_as":1,"prefix":"10.0.0.0/8","next_hop":"10.0.0.1","time":-1}"#,
                "time -1",
            ),
            (
                r#"{"peer_address":"10.0.0.1","peer_as":1,"prefix":"10.0.0.0/8","withdrawn":true,"colour":"red"}"#,
                "colour",
            ),
        ];
        for (line, expected) in cases {
            let error = parse_line(line, ROUTER, UNIX_EPOCH).unwrap_err();
            assert!(error.contains(expected), "{line}: {error}");
        }
    }

    #[test]
    fn communities() {
        for good in ["65000:100", "0:0", "65535:65535", "4200000000:1:2"] {
            assert!(is_community(good), "{good}");
        }
        for bad in [
            "65536:1",
            "1",
            "1:2:3:4",
            "a:b",
            "+1:2",
            ":1",
            "4294967296:1:1",
        ] {
            assert!(!is_community(bad), "{bad}");
        }
    }
}
