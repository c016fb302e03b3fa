//! Fair shares of the connection cap: open connections counted per client
//! (an IPv4 address, an IPv6 /64), so one client cannot take every
//! connection the server has. Addresses of trusted proxies (behind which
//! every reader shares one address) are not capped per client, only by the
//! server's cap.
//!
//! Touched by the accept loop once per connection and by a connection's end:
//! one short lock on a table of the clients with a connection open (bounded
//! by the server's cap).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Whom a connection belongs to: an IPv4 address, or the /64 of an IPv6
/// one (a host usually holds a whole /64, so per-address shares would be
/// free to multiply). IPv4-mapped IPv6 addresses are their IPv4 address.
pub fn client_of(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// An address or a network (`10.0.0.0/8`, `fd00::/8`) of trusted proxies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// `addr` or `addr/prefix`; `None` if it is neither.
    pub fn parse(text: &str) -> Option<Network> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().ok()?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= bits)?,
            None => bits,
        };
        // An IPv4-mapped IPv6 network is the IPv4 network it maps (peers
        // are compared as IPv4).
        if let IpAddr::V6(v6) = addr {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return Some(Network {
                    addr: IpAddr::V4(v4),
                    prefix: prefix.checked_sub(96)?,
                });
            }
        }
        Some(Network { addr, prefix })
    }

    /// Whether `ip` is in it (an IPv4-mapped IPv6 address as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Open connections, handlers running and KiB of responses waiting to be
/// written, per client.
pub(super) struct Clients {
    per_client: usize,
    response_share_kib: usize,
    body_share_kib: usize,
    handlers_per_client: usize,
    trusted: Vec<Network>,
    open: Mutex<HashMap<IpAddr, Open>>,
    /// Woken when a handler of any client ends.
    handler_done: Notify,
}

#[derive(Default)]
struct Open {
    connections: usize,
    response_kib: usize,
    handlers: usize,
    body_kib: usize,
}

impl Open {
    fn is_empty(&self) -> bool {
        self.connections == 0 && self.response_kib == 0 && self.handlers == 0 && self.body_kib == 0
    }
}

/// A request body's place in its client's share of the body budget.
pub(super) struct BodyShare {
    clients: Arc<Clients>,
    client: IpAddr,
    kib: usize,
}

/// One of a client's handlers running; given back when dropped.
pub(super) struct Running {
    clients: Arc<Clients>,
    client: IpAddr,
}

/// A connection's place in its client's share; given back when dropped.
pub(super) struct Share {
    clients: Arc<Clients>,
    client: Option<IpAddr>,
}

/// A response's place in its client's share of the response budget.
pub(super) struct ResponseShare {
    clients: Arc<Clients>,
    client: IpAddr,
    kib: usize,
}

impl Clients {
    /// At most `per_client` connections, `handlers_per_client` handlers
    /// running, `response_share_kib` of responses waiting to be written
    /// and `body_share_kib` of request bodies per client, except `trusted`.
    pub(super) fn new(
        per_client: usize,
        handlers_per_client: usize,
        response_share_kib: usize,
        body_share_kib: usize,
        trusted: Vec<Network>,
    ) -> Arc<Clients> {
        Arc::new(Clients {
            per_client: per_client.max(1),
            response_share_kib: response_share_kib.max(1),
            body_share_kib: body_share_kib.max(1),
            handlers_per_client: handlers_per_client.max(1),
            trusted,
            open: Mutex::new(HashMap::new()),
            handler_done: Notify::new(),
        })
    }

    /// A handler slot for `client`, waiting until `until` for one of its
    /// others to end when it has `handlers_per_client` running: one client
    /// cannot take every handler thread, nor pass the response checks with
    /// more renders under way than that. `Ok(None)` for a trusted proxy;
    /// `Err` when none came free in time.
    pub(super) async fn handler(
        self: &Arc<Self>,
        client: Option<IpAddr>,
        until: tokio::time::Instant,
    ) -> Result<Option<Running>, ()> {
        let Some(client) = client else {
            return Ok(None);
        };
        loop {
            let done = self.handler_done.notified();
            {
                let mut open = self.table();
                let entry = open.entry(client).or_default();
                if entry.handlers < self.handlers_per_client {
                    entry.handlers += 1;
                    return Ok(Some(Running {
                        clients: self.clone(),
                        client,
                    }));
                }
            }
            if tokio::time::timeout_at(until, done).await.is_err() {
                return Err(());
            }
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Open>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A share for a connection from `peer`, or `None` when its client
    /// already holds `per_client` connections. Trusted proxies always get one.
    pub(super) fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Share> {
        if self.trusted.iter().any(|n| n.contains(peer)) {
            return Some(Share {
                clients: self.clone(),
                client: None,
            });
        }
        let client = client_of(peer);
        let mut open = self.table();
        let entry = open.entry(client).or_default();
        if entry.connections >= self.per_client {
            return None;
        }
        entry.connections += 1;
        Some(Share {
            clients: self.clone(),
            client: Some(client),
        })
    }

    /// KiB of `client`'s responses waiting to be written (0 for a trusted
    /// proxy), and whether it may have another rendered: under its share.
    pub(super) fn response_room(&self, client: Option<IpAddr>) -> (usize, bool) {
        let Some(client) = client else {
            return (0, true);
        };
        let held = self.table().get(&client).map_or(0, |o| o.response_kib);
        (held, held < self.response_share_kib)
    }

    /// Counts `bytes` of a rendered response against its client's share
    /// until the returned share is dropped (`None` for a trusted proxy).
    pub(super) fn hold_response(
        self: &Arc<Self>,
        client: Option<IpAddr>,
        bytes: usize,
    ) -> Option<ResponseShare> {
        let client = client?;
        let kib = bytes.div_ceil(1024);
        self.table().entry(client).or_default().response_kib += kib;
        Some(ResponseShare {
            clients: self.clone(),
            client,
            kib,
        })
    }

    /// Counts a request body of `kib` against its client's share of the
    /// body budget until the returned share is dropped: `Err` when it would
    /// pass the share (so one client cannot hold the server's budget with
    /// bodies it never sends), `Ok(None)` for a trusted proxy or no body.
    pub(super) fn hold_body(
        self: &Arc<Self>,
        client: Option<IpAddr>,
        kib: usize,
    ) -> Result<Option<BodyShare>, ()> {
        let Some(client) = client.filter(|_| kib > 0) else {
            return Ok(None);
        };
        let mut open = self.table();
        let entry = open.entry(client).or_default();
        if entry.body_kib + kib > self.body_share_kib {
            if entry.is_empty() {
                open.remove(&client);
            }
            return Err(());
        }
        entry.body_kib += kib;
        Ok(Some(BodyShare {
            clients: self.clone(),
            client,
            kib,
        }))
    }

    /// Clients with a connection or a response (for tests).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.table().len()
    }

    /// Takes what `take` says off `client`'s row, dropping the row when
    /// nothing is left in it.
    fn release(&self, client: IpAddr, take: impl FnOnce(&mut Open)) {
        let mut open = self.table();
        if let Some(o) = open.get_mut(&client) {
            take(o);
            if o.is_empty() {
                open.remove(&client);
            }
        }
    }
}

impl Share {
    /// The client this share counts against (`None`: a trusted proxy).
    pub(super) fn client(&self) -> Option<IpAddr> {
        self.client
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        if let Some(client) = self.client {
            self.clients
                .release(client, |o| o.connections = o.connections.saturating_sub(1));
        }
    }
}

impl Drop for ResponseShare {
    fn drop(&mut self) {
        let kib = self.kib;
        self.clients.release(self.client, |o| {
            o.response_kib = o.response_kib.saturating_sub(kib)
        });
    }
}

impl Drop for BodyShare {
    fn drop(&mut self) {
        let kib = self.kib;
        self.clients
            .release(self.client, |o| o.body_kib = o.body_kib.saturating_sub(kib));
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.clients
            .release(self.client, |o| o.handlers = o.handlers.saturating_sub(1));
        self.clients.handler_done.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_gets_its_share_and_no_more_and_gets_it_back() {
        let clients = Clients::new(2, 2, 64, 64, Vec::new());
        let a1 = clients.admit(ip("192.0.2.1")).unwrap();
        let _a2 = clients.admit(ip("192.0.2.1")).unwrap();
        assert!(clients.admit(ip("192.0.2.1")).is_none());
        // The same address written as IPv4-mapped IPv6 is the same client.
        assert!(clients.admit(ip("::ffff:192.0.2.1")).is_none());
        let _b = clients.admit(ip("192.0.2.2")).unwrap();
        drop(a1);
        let _a3 = clients.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(clients.tracked(), 2);
    }

    #[test]
    fn an_ipv6_64_is_one_client_and_the_table_forgets_closed_clients() {
        let clients = Clients::new(1, 2, 64, 64, Vec::new());
        let a = clients.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(clients.admit(ip("2001:db8:1:2:ffff::9")).is_none());
        let b = clients.admit(ip("2001:db8:1:3::1")).unwrap();
        drop((a, b));
        assert_eq!(clients.tracked(), 0);
    }

    #[test]
    fn a_client_past_its_share_of_the_response_budget_gets_no_more_room() {
        let clients = Clients::new(4, 2, 64, 64, Vec::new());
        let a = ip("192.0.2.1");
        let conn = clients.admit(a).unwrap();
        assert!(clients.response_room(conn.client()).1);
        let first = clients.hold_response(conn.client(), 40 * 1024);
        assert!(clients.response_room(conn.client()).1);
        let second = clients.hold_response(conn.client(), 30 * 1024);
        assert_eq!(clients.response_room(conn.client()), (70, false));
        // Another client is not held back.
        let other = clients.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(clients.response_room(other.client()), (0, true));
        drop(first);
        assert!(clients.response_room(conn.client()).1);
        // The connection may end before its last response is written.
        drop(conn);
        assert_eq!(clients.tracked(), 2);
        drop(second);
        drop(other);
        assert_eq!(clients.tracked(), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_client_runs_at_most_its_handlers_at_once_and_waits_for_one_to_end() {
        let clients = Clients::new(8, 2, 64, 64, Vec::new());
        let a = Some(ip("192.0.2.1"));
        let soon = || tokio::time::Instant::now() + std::time::Duration::from_millis(50);
        let first = clients.handler(a, soon()).await.unwrap();
        let _second = clients.handler(a, soon()).await.unwrap();
        assert!(clients.handler(a, soon()).await.is_err(), "a third at once");
        // Another client and a trusted proxy are not held back.
        assert!(clients.handler(Some(ip("192.0.2.2")), soon()).await.is_ok());
        assert!(clients.handler(None, soon()).await.unwrap().is_none());
        let waiting = {
            let clients = clients.clone();
            tokio::spawn(async move {
                let until = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
                clients.handler(a, until).await.is_ok()
            })
        };
        tokio::task::yield_now().await;
        drop(first);
        assert!(waiting.await.unwrap());
        drop(_second);
        assert_eq!(clients.tracked(), 0);
    }

    #[test]
    fn a_client_holds_at_most_its_share_of_the_body_budget() {
        let clients = Clients::new(64, 2, 64, 3 * 1025, Vec::new());
        let a = Some(ip("192.0.2.1"));
        let held: Vec<_> = (0..3)
            .map(|_| clients.hold_body(a, 1025).unwrap().unwrap())
            .collect();
        assert!(clients.hold_body(a, 1025).is_err(), "a fourth 1 MiB body");
        assert!(clients.hold_body(Some(ip("192.0.2.2")), 1025).is_ok());
        assert!(clients.hold_body(a, 0).unwrap().is_none(), "no body");
        assert!(
            clients.hold_body(None, 1 << 20).unwrap().is_none(),
            "a trusted proxy"
        );
        drop(held);
        assert_eq!(clients.tracked(), 0);
    }

    #[test]
    fn trusted_proxies_are_not_capped_per_client() {
        let trusted = vec![
            Network::parse("10.0.0.0/8").unwrap(),
            Network::parse("fd00::1").unwrap(),
        ];
        let clients = Clients::new(1, 2, 64, 64, trusted);
        let held: Vec<Share> = (0..5)
            .map(|_| clients.admit(ip("10.1.2.3")).unwrap())
            .chain((0..5).map(|_| clients.admit(ip("fd00::1")).unwrap()))
            .collect();
        assert_eq!(held.len(), 10);
        assert_eq!(clients.tracked(), 0);
        let _other = clients.admit(ip("fd00::2")).unwrap();
        assert!(clients.admit(ip("fd00::3")).is_none(), "same /64");
        assert!(clients.admit(ip("11.0.0.1")).is_some());
    }

    #[test]
    fn networks_parse_and_match_by_their_prefix() {
        let n = Network::parse("192.168.0.0/16").unwrap();
        assert!(n.contains(ip("192.168.44.1")));
        assert!(n.contains(ip("::ffff:192.168.0.9")));
        assert!(!n.contains(ip("192.169.0.1")));
        assert!(!n.contains(ip("::1")));
        assert!(Network::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Network::parse("::/0").unwrap().contains(ip("2001:db8::1")));
        assert!(Network::parse("2001:db8::/32")
            .unwrap()
            .contains(ip("2001:db8:ffff::1")));
        assert_eq!(
            Network::parse("127.0.0.1").unwrap().to_string(),
            "127.0.0.1/32"
        );
        // IPv4-mapped IPv6, as a proxy may be written.
        let mapped = Network::parse("::ffff:10.0.0.0/104").unwrap();
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
        assert!(mapped.contains(ip("10.9.8.7")));
        assert!(Network::parse("::ffff:10.0.0.1")
            .unwrap()
            .contains(ip("10.0.0.1")));
        assert_eq!(Network::parse("::ffff:10.0.0.0/64"), None);
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "example.com",
            "10.0.0.0/x",
            "1.2.3",
        ] {
            assert_eq!(Network::parse(bad), None, "{bad}");
        }
    }
}
