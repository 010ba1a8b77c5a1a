//! The gate: which TCP connections are let in, decided at accept before any
//! SSH work, and how long an unauthenticated one may stay.
//!
//! Modelled on OpenSSH's sshd: `MaxStartups` (random early drop of
//! unauthenticated connections between `start` and `full`),
//! `PerSourceMaxStartups` with `PerSourceNetBlockSize` (a cap per source
//! address block) and a total connection cap. A connection counts as a
//! startup from accept until its login succeeds, so a flood of silent or
//! stalled sockets from one address fills only that address's share.
//! Refused connections get one line of text (SSH allows lines before the
//! version string) and are closed at once.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

/// `--max-startups start:rate:full`: below `start` unauthenticated
/// connections every new one is let in; from `start` on each is refused
/// with a probability rising linearly from `rate` percent to 100 at `full`;
/// at `full` all are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxStartups {
    /// Unauthenticated connections always let in.
    pub start: usize,
    /// Percent refused at `start`.
    pub rate: u32,
    /// Unauthenticated connections at which every new one is refused.
    pub full: usize,
}

impl FromStr for MaxStartups {
    type Err = String;

    /// `N` (refuse beyond N) or `start:rate:full`, as sshd_config's
    /// `MaxStartups`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid value {s:?} for --max-startups: want N or START:RATE:FULL");
        let nums: Vec<&str> = s.split(':').collect();
        let num = |t: &str| t.trim().parse::<usize>().map_err(|_| bad());
        let m = match nums.as_slice() {
            [n] => {
                let n = num(n)?;
                MaxStartups {
                    start: n,
                    rate: 100,
                    full: n,
                }
            }
            [start, rate, full] => MaxStartups {
                start: num(start)?,
                rate: u32::try_from(num(rate)?).map_err(|_| bad())?,
                full: num(full)?,
            },
            _ => return Err(bad()),
        };
        if m.start == 0 || m.rate > 100 || m.full < m.start || (m.rate == 0 && m.full > m.start) {
            return Err(format!(
                "invalid value {s:?} for --max-startups: need 0 < START <= FULL and a RATE of 1..100"
            ));
        }
        Ok(m)
    }
}

/// `--per-source-netblock-size V4[:V6]`: the prefix lengths that group
/// source addresses (sshd's `PerSourceNetBlockSize`, default 32:128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetBlockSize {
    /// Prefix length for IPv4 sources (0..=32).
    pub v4: u8,
    /// Prefix length for IPv6 sources (0..=128).
    pub v6: u8,
}

impl Default for NetBlockSize {
    fn default() -> Self {
        NetBlockSize { v4: 32, v6: 128 }
    }
}

impl FromStr for NetBlockSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid value {s:?} for --per-source-netblock-size: want V4 or V4:V6, e.g. 32:128"
            )
        };
        let (v4, v6) = match s.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let v4: u8 = v4.trim().parse().map_err(|_| bad())?;
        let v6: u8 = match v6 {
            Some(b) => b.trim().parse().map_err(|_| bad())?,
            None => 128,
        };
        if v4 > 32 || v6 > 128 {
            return Err(bad());
        }
        Ok(NetBlockSize { v4, v6 })
    }
}

impl NetBlockSize {
    /// The block `ip` belongs to (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn block(&self, ip: IpAddr) -> Block {
        match canonical(ip) {
            IpAddr::V4(a) => Block::V4(prefix_of(u128::from(u32::from(a)), 32, self.v4) as u32),
            IpAddr::V6(a) => Block::V6(prefix_of(u128::from(a), 128, self.v6)),
        }
    }
}

/// The first `prefix` of the `width` low bits of `bits`, the rest zeroed.
fn prefix_of(bits: u128, width: u32, prefix: u8) -> u128 {
    let host_bits = width - u32::from(prefix);
    if host_bits >= 128 {
        0
    } else {
        bits & !((1u128 << host_bits) - 1) & (u128::MAX >> (128 - width))
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`; everything else unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// A source address block: the key of per-source counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Block {
    /// An IPv4 block (address bits, masked).
    V4(u32),
    /// An IPv6 block (address bits, masked).
    V6(u128),
}

impl std::fmt::Display for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Block::V4(b) => write!(f, "{}", std::net::Ipv4Addr::from(*b)),
            Block::V6(b) => write!(f, "{}", Ipv6Addr::from(*b)),
        }
    }
}

/// The limits the gate applies.
#[derive(Clone, Debug)]
pub struct GateConfig {
    /// Connections open at once, logged in or not; more are refused.
    pub max_connections: usize,
    /// Unauthenticated connections, all sources together.
    pub max_startups: MaxStartups,
    /// Unauthenticated connections from one source block (0: no cap).
    pub per_source_max_startups: usize,
    /// How sources are grouped into blocks.
    pub netblock: NetBlockSize,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            max_connections: 1024,
            max_startups: MaxStartups {
                start: 64,
                rate: 30,
                full: 256,
            },
            per_source_max_startups: 32,
            netblock: NetBlockSize::default(),
        }
    }
}

/// Why a connection was turned away at the door.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections` are open.
    Full,
    /// Random early drop between `start` and `full`, or `full` reached.
    Startups,
    /// The source block has its share of unauthenticated connections.
    PerSource,
}

impl Refused {
    /// The line the client is sent before the connection is closed.
    pub fn banner(self) -> &'static [u8] {
        match self {
            Refused::Full => b"Too many connections; try again later\r\n",
            Refused::Startups => b"Too many unauthenticated connections; try again later\r\n",
            Refused::PerSource => {
                b"Too many unauthenticated connections from your address; try again later\r\n"
            }
        }
    }

    /// What the log says.
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Full => "past the connection limit",
            Refused::Startups => "past max-startups",
            Refused::PerSource => "past per-source-max-startups",
        }
    }
}

#[derive(Default)]
struct Counts {
    open: usize,
    startups: usize,
    per_block: HashMap<Block, usize>,
}

/// Counts connections and decides at accept. Shared by the accept loop and
/// the admissions it hands out.
pub struct Gate {
    cfg: GateConfig,
    counts: Mutex<Counts>,
}

impl Gate {
    /// A gate applying `cfg`.
    pub fn new(cfg: GateConfig) -> Arc<Self> {
        Arc::new(Gate {
            cfg,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// The limits in force.
    pub fn config(&self) -> &GateConfig {
        &self.cfg
    }

    /// Let a connection from `ip` in, or say why not. `roll` is a uniform
    /// random number in 0..100 for the early drop.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, roll: u32) -> Result<Admission, Refused> {
        let block = self.cfg.netblock.block(ip);
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if c.open >= self.cfg.max_connections {
            return Err(Refused::Full);
        }
        let per = c.per_block.get(&block).copied().unwrap_or(0);
        if self.cfg.per_source_max_startups > 0 && per >= self.cfg.per_source_max_startups {
            return Err(Refused::PerSource);
        }
        let m = self.cfg.max_startups;
        if c.startups >= m.full {
            return Err(Refused::Startups);
        }
        if c.startups >= m.start {
            // sshd's formula: rate% at start, rising to 100% at full.
            let span = (m.full - m.start).max(1) as u64;
            let over = (c.startups - m.start) as u64;
            let p = u64::from(m.rate) + (100 - u64::from(m.rate)) * over / span;
            if u64::from(roll) < p {
                return Err(Refused::Startups);
            }
        }
        c.open += 1;
        c.startups += 1;
        *c.per_block.entry(block).or_insert(0) += 1;
        Ok(Admission {
            gate: self.clone(),
            block: Some(block),
        })
    }

    /// (open connections, unauthenticated ones) now.
    pub fn counts(&self) -> (usize, usize) {
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        (c.open, c.startups)
    }

    fn end_startup(&self, c: &mut Counts, block: Block) {
        c.startups -= 1;
        if let Some(n) = c.per_block.get_mut(&block) {
            *n -= 1;
            if *n == 0 {
                c.per_block.remove(&block);
            }
        }
    }
}

/// One admitted connection: counted as open until dropped, and as a
/// startup until [`Admission::logged_in`].
pub struct Admission {
    gate: Arc<Gate>,
    block: Option<Block>,
}

impl Admission {
    /// The login succeeded: the connection stops counting as a startup.
    pub fn logged_in(&mut self) {
        if let Some(block) = self.block.take() {
            let mut c = self.gate.counts.lock().unwrap_or_else(|e| e.into_inner());
            self.gate.end_startup(&mut c, block);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut c = self.gate.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.open -= 1;
        if let Some(block) = self.block.take() {
            self.gate.end_startup(&mut c, block);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn max_startups_syntax() {
        assert_eq!(
            "10:30:100".parse::<MaxStartups>().unwrap(),
            MaxStartups {
                start: 10,
                rate: 30,
                full: 100
            }
        );
        assert_eq!(
            "5".parse::<MaxStartups>().unwrap(),
            MaxStartups {
                start: 5,
                rate: 100,
                full: 5
            }
        );
        for bad in [
            "",
            "0",
            "10:30",
            "10:101:100",
            "100:30:10",
            "a:b:c",
            "1:2:3:4",
            "-1",
        ] {
            assert!(bad.parse::<MaxStartups>().is_err(), "{bad}");
        }
    }

    #[test]
    fn netblocks_group_sources() {
        let nb: NetBlockSize = "24:64".parse().unwrap();
        assert_eq!(nb.block(ip("10.1.2.3")), nb.block(ip("10.1.2.200")));
        assert_ne!(nb.block(ip("10.1.2.3")), nb.block(ip("10.1.3.3")));
        assert_eq!(nb.block(ip("::ffff:10.1.2.3")), nb.block(ip("10.1.2.9")));
        assert_eq!(
            nb.block(ip("2001:db8::1")),
            nb.block(ip("2001:db8::ffff:1"))
        );
        assert_ne!(nb.block(ip("2001:db8::1")), nb.block(ip("2001:db8:0:1::1")));
        let all: NetBlockSize = "0:0".parse().unwrap();
        assert_eq!(all.block(ip("1.2.3.4")), all.block(ip("200.2.3.4")));
        assert_eq!(
            NetBlockSize::default().block(ip("1.2.3.4")).to_string(),
            "1.2.3.4"
        );
        for bad in ["33", "32:129", "x", "32:"] {
            assert!(bad.parse::<NetBlockSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn per_source_cap_spares_other_sources() {
        let gate = Gate::new(GateConfig {
            max_connections: 100,
            max_startups: "50:30:90".parse().unwrap(),
            per_source_max_startups: 3,
            netblock: NetBlockSize::default(),
        });
        let held: Vec<_> = (0..3)
            .map(|_| gate.admit(ip("10.0.0.1"), 0).unwrap())
            .collect();
        assert_eq!(
            gate.admit(ip("10.0.0.1"), 99).err(),
            Some(Refused::PerSource)
        );
        let mut other = gate.admit(ip("10.0.0.2"), 0).unwrap();
        assert_eq!(gate.counts(), (4, 4));
        other.logged_in();
        assert_eq!(gate.counts(), (4, 3));
        drop(held);
        assert_eq!(gate.counts(), (1, 0));
        assert!(gate.admit(ip("10.0.0.1"), 0).is_ok());
        drop(other);
        assert_eq!(gate.counts(), (0, 0));
    }

    #[test]
    fn logged_in_connections_do_not_count_as_startups() {
        let gate = Gate::new(GateConfig {
            max_connections: 5,
            max_startups: "2".parse().unwrap(),
            per_source_max_startups: 0,
            netblock: NetBlockSize::default(),
        });
        let mut a = gate.admit(ip("10.0.0.1"), 0).unwrap();
        let _b = gate.admit(ip("10.0.0.1"), 0).unwrap();
        assert_eq!(
            gate.admit(ip("10.0.0.1"), 99).err(),
            Some(Refused::Startups)
        );
        a.logged_in();
        let mut c = gate.admit(ip("10.0.0.1"), 0).unwrap();
        c.logged_in();
        // b and d are the two startups now.
        let d = gate.admit(ip("10.0.0.3"), 0).unwrap();
        assert_eq!(gate.admit(ip("10.0.0.3"), 0).err(), Some(Refused::Startups));
        drop((_b, d));
        assert_eq!(gate.counts(), (2, 0));
        // Total cap: 5 open, logged in or not.
        let mut e = Vec::new();
        for _ in 0..3 {
            let mut x = gate.admit(ip("10.0.0.4"), 0).unwrap();
            x.logged_in();
            e.push(x);
        }
        assert_eq!(gate.admit(ip("10.0.0.5"), 0).err(), Some(Refused::Full));
    }

    #[test]
    fn early_drop_rises_from_rate_to_full() {
        let gate = Gate::new(GateConfig {
            max_connections: 1000,
            max_startups: "10:30:20".parse().unwrap(),
            per_source_max_startups: 0,
            netblock: NetBlockSize::default(),
        });
        let mut held: Vec<_> = (0..10)
            .map(|_| gate.admit(ip("10.0.0.1"), 0).unwrap())
            .collect();
        // At start: 30% refused (rolls 0..29 refused, 30..99 let in).
        assert_eq!(
            gate.admit(ip("10.0.0.1"), 29).err(),
            Some(Refused::Startups)
        );
        held.push(gate.admit(ip("10.0.0.1"), 30).unwrap());
        // 11 of 10..20: 30 + 70 * 1 / 10 = 37%.
        assert!(gate.admit(ip("10.0.0.1"), 36).is_err());
        held.push(gate.admit(ip("10.0.0.1"), 37).unwrap());
        while gate.counts().1 < 20 {
            held.push(gate.admit(ip("10.0.0.1"), 99).unwrap());
        }
        assert_eq!(
            gate.admit(ip("10.0.0.1"), 99).err(),
            Some(Refused::Startups)
        );
    }
}
