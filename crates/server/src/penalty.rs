//! Per-source penalties, after OpenSSH's `PerSourcePenalties`: a source
//! address block that fails logins, connects without trying to log in or
//! runs out its grace time collects penalty time; once a block's penalty
//! reaches `min`, its connections are refused at accept (before any
//! cryptography) and its logins on connections already open are refused
//! without checking the credential, until the penalty has run out.
//!
//! The table is bounded (`max-sources` blocks); when it is full, new
//! sources are not tracked (sshd's `overflow:permissive`) and that is
//! logged.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::gate::{Block, NetBlockSize};

/// What earns penalty time, and the bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PenaltyConfig {
    /// Each failed password or keyboard-interactive answer, and a
    /// connection that ends without login after refused keys.
    pub authfail: Duration,
    /// A connection that ends without trying to log in.
    pub noauth: Duration,
    /// A connection closed at the login grace time.
    pub grace_exceeded: Duration,
    /// Penalty time at which a source starts being refused.
    pub min: Duration,
    /// The most penalty time a source can have.
    pub max: Duration,
    /// Blocks tracked at most.
    pub max_sources: usize,
}

impl Default for PenaltyConfig {
    fn default() -> Self {
        PenaltyConfig {
            authfail: Duration::from_secs(5),
            noauth: Duration::from_secs(1),
            grace_exceeded: Duration::from_secs(10),
            min: Duration::from_secs(15),
            max: Duration::from_secs(600),
            max_sources: 65536,
        }
    }
}

impl PenaltyConfig {
    /// `--per-source-penalties`: `no` (off, `None`), `yes` (the defaults),
    /// or space- or comma-separated `name:value` pairs changing them:
    /// `authfail:5s noauth:1s grace-exceeded:10s min:15s max:10m
    /// max-sources:65536`. `parse_duration` reads the durations.
    pub fn parse(
        s: &str,
        parse_duration: impl Fn(&str) -> Result<Duration, String>,
    ) -> Result<Option<Self>, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("no") {
            return Ok(None);
        }
        let mut cfg = PenaltyConfig::default();
        if t.eq_ignore_ascii_case("yes") || t.is_empty() {
            return Ok(Some(cfg));
        }
        for item in t.split([' ', ',']).filter(|i| !i.is_empty()) {
            let (name, value) = item.split_once(':').ok_or_else(|| {
                format!("invalid --per-source-penalties item {item:?}: want name:value")
            })?;
            let dur = || parse_duration(value);
            match name {
                "authfail" => cfg.authfail = dur()?,
                "noauth" => cfg.noauth = dur()?,
                "grace-exceeded" => cfg.grace_exceeded = dur()?,
                "min" => cfg.min = dur()?,
                "max" => cfg.max = dur()?,
                "max-sources" => {
                    cfg.max_sources = value.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                        format!("invalid --per-source-penalties max-sources {value:?}: want a count of at least 1")
                    })?
                }
                _ => {
                    return Err(format!(
                        "unknown --per-source-penalties item {name:?}: want authfail, noauth, \
                         grace-exceeded, min, max or max-sources"
                    ))
                }
            }
        }
        if cfg.max < cfg.min {
            return Err(format!(
                "invalid --per-source-penalties: max ({:?}) below min ({:?})",
                cfg.max, cfg.min
            ));
        }
        Ok(Some(cfg))
    }
}

/// An address range: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid address range {s:?}: want ADDR or ADDR/PREFIX");
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let net = crate::gate::canonical(net);
        let width = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= width)
                .ok_or_else(bad)?,
            None => width,
        };
        Ok(Cidr { net, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is inside the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = crate::gate::canonical(ip);
        let nb = NetBlockSize {
            v4: self.prefix.min(32),
            v6: self.prefix,
        };
        match (ip, self.net) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                nb.block(ip) == nb.block(self.net)
            }
            _ => false,
        }
    }
}

/// What a connection did to earn penalty time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offence {
    /// A wrong password or keyboard-interactive answer; or a connection
    /// that ended without login after refused keys.
    AuthFail,
    /// A connection that ended without trying to log in.
    NoAuth,
    /// A connection closed at the login grace time.
    GraceExceeded,
}

struct Entry {
    /// The penalty runs out here.
    until: Instant,
    /// Reached `min` at some point: refused until `until`.
    active: bool,
}

/// The penalty table.
pub struct Penalties {
    cfg: PenaltyConfig,
    netblock: NetBlockSize,
    exempt: Vec<Cidr>,
    table: Mutex<Table>,
}

struct Table {
    entries: HashMap<Block, Entry>,
    overflow_logged: bool,
}

impl Penalties {
    /// A table applying `cfg` to blocks of `netblock`, never penalising
    /// sources in `exempt`.
    pub fn new(cfg: PenaltyConfig, netblock: NetBlockSize, exempt: Vec<Cidr>) -> Self {
        Penalties {
            cfg,
            netblock,
            exempt,
            table: Mutex::new(Table {
                entries: HashMap::new(),
                overflow_logged: false,
            }),
        }
    }

    fn exempt(&self, ip: IpAddr) -> bool {
        self.exempt.iter().any(|c| c.contains(ip))
    }

    /// How long `ip`'s block is still refused for, if it is now.
    pub fn refused_for(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        if self.exempt(ip) {
            return None;
        }
        let block = self.netblock.block(ip);
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        match t.entries.get(&block) {
            Some(e) if e.until <= now => {
                t.entries.remove(&block);
                None
            }
            Some(e) if e.active => Some(e.until - now),
            _ => None,
        }
    }

    /// Add the penalty for `what` to `ip`'s block. Returns the time it is
    /// now refused for if this made it (newly) refused, for the log.
    pub fn penalise(&self, ip: IpAddr, what: Offence, now: Instant) -> Option<Duration> {
        let amount = match what {
            Offence::AuthFail => self.cfg.authfail,
            Offence::NoAuth => self.cfg.noauth,
            Offence::GraceExceeded => self.cfg.grace_exceeded,
        };
        if amount.is_zero() || self.exempt(ip) {
            return None;
        }
        let block = self.netblock.block(ip);
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if !t.entries.contains_key(&block) && t.entries.len() >= self.cfg.max_sources {
            // Make room from what has run out; if nothing has, the new
            // source goes untracked (permissive, as sshd's default).
            t.entries.retain(|_, e| e.until > now);
            if t.entries.len() >= self.cfg.max_sources {
                if !t.overflow_logged {
                    t.overflow_logged = true;
                    tracing::warn!(
                        "per-source penalties: {} sources tracked, the most allowed; new sources go unpenalised until some run out",
                        t.entries.len()
                    );
                }
                return None;
            }
            t.overflow_logged = false;
        }
        let cap = now + self.cfg.max;
        let e = t.entries.entry(block).or_insert(Entry {
            until: now,
            active: false,
        });
        if e.until < now {
            *e = Entry {
                until: now,
                active: false,
            };
        }
        e.until = (e.until + amount).min(cap);
        if !e.active && e.until - now >= self.cfg.min {
            e.active = true;
            return Some(e.until - now);
        }
        None
    }

    /// Blocks tracked now (for tests).
    pub fn tracked(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn secs(v: &str) -> Result<Duration, String> {
        v.strip_suffix('s')
            .and_then(|n| n.parse().ok())
            .map(Duration::from_secs)
            .ok_or_else(|| format!("bad duration {v:?}"))
    }

    #[test]
    fn syntax() {
        assert_eq!(PenaltyConfig::parse("no", secs).unwrap(), None);
        assert_eq!(
            PenaltyConfig::parse("yes", secs).unwrap(),
            Some(PenaltyConfig::default())
        );
        let c = PenaltyConfig::parse("authfail:2s noauth:0s,min:4s max-sources:10", secs)
            .unwrap()
            .unwrap();
        assert_eq!(c.authfail, Duration::from_secs(2));
        assert_eq!(c.noauth, Duration::ZERO);
        assert_eq!(c.min, Duration::from_secs(4));
        assert_eq!(c.max_sources, 10);
        for bad in [
            "authfail",
            "authfail:x",
            "crash:90s",
            "max-sources:0",
            "min:20s max:10s",
        ] {
            assert!(PenaltyConfig::parse(bad, secs).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.200.1.1")) && c.contains(ip("::ffff:10.0.0.1")));
        assert!(!c.contains(ip("11.0.0.1")) && !c.contains(ip("::1")));
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::1")) && !v6.contains(ip("2001:db9::1")));
        for bad in ["10.0.0.0/33", "x", "::/129", "10.0.0.0/"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn refused_from_min_until_it_runs_out() {
        let p = Penalties::new(
            PenaltyConfig::default(),
            NetBlockSize::default(),
            vec!["10.9.0.0/16".parse().unwrap()],
        );
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        assert_eq!(p.penalise(a, Offence::AuthFail, t0), None);
        assert_eq!(p.penalise(a, Offence::AuthFail, t0), None);
        assert_eq!(p.refused_for(a, t0), None, "10 s is below min");
        assert_eq!(
            p.penalise(a, Offence::AuthFail, t0),
            Some(Duration::from_secs(15))
        );
        assert_eq!(p.refused_for(a, t0), Some(Duration::from_secs(15)));
        // Still refused below min once active, until the time runs out.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(p.refused_for(a, later), Some(Duration::from_secs(5)));
        assert_eq!(p.refused_for(a, t0 + Duration::from_secs(15)), None);
        assert_eq!(p.tracked(), 0);
        // Other sources and exempt ones are untouched.
        assert_eq!(p.refused_for(ip("10.0.0.2"), t0), None);
        for _ in 0..10 {
            p.penalise(ip("10.9.1.1"), Offence::AuthFail, t0);
        }
        assert_eq!(p.refused_for(ip("10.9.1.1"), t0), None);
    }

    #[test]
    fn capped_at_max_and_decays_between_offences() {
        let p = Penalties::new(PenaltyConfig::default(), NetBlockSize::default(), vec![]);
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        for _ in 0..1000 {
            p.penalise(a, Offence::AuthFail, t0);
        }
        assert_eq!(p.refused_for(a, t0), Some(Duration::from_secs(600)));
        // A health check every few seconds never adds up.
        let b = ip("10.0.0.2");
        for i in 0..100 {
            p.penalise(b, Offence::NoAuth, t0 + Duration::from_secs(5 * i));
            assert_eq!(p.refused_for(b, t0 + Duration::from_secs(5 * i)), None);
        }
    }

    #[test]
    fn the_table_is_bounded() {
        let cfg = PenaltyConfig {
            max_sources: 3,
            ..PenaltyConfig::default()
        };
        let p = Penalties::new(cfg, NetBlockSize::default(), vec![]);
        let t0 = Instant::now();
        for i in 0..10 {
            p.penalise(ip(&format!("10.0.0.{i}")), Offence::GraceExceeded, t0);
        }
        assert_eq!(p.tracked(), 3);
        // Room again once entries run out.
        let later = t0 + Duration::from_secs(11);
        p.penalise(ip("10.0.1.1"), Offence::GraceExceeded, later);
        assert_eq!(p.tracked(), 1);
    }
}
