//! Client sockets: the target address (loopback only), connections spread over several
//! loopback source addresses, and the open-file limit.
//!
//! One source address gives one ephemeral port range (about 28k ports) towards the
//! server's single address and port, and back-to-back rounds leave thousands of sockets
//! in TIME_WAIT; spreading over 127.0.0.2…127.0.0.N multiplies the usable 4-tuples.

use anyhow::{bail, Context};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use tokio::net::{TcpSocket, TcpStream};

/// Where the clients connect: `http://127.x.y.z:PORT`.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server's address.
    pub addr: SocketAddrV4,
    /// `host:port`, for `Host` headers and the WebSocket URL.
    pub authority: String,
}

impl Target {
    /// Parses `http://IP:PORT[/…]`. Only IPv4 loopback addresses are accepted: this tool
    /// is for load on this machine, never on anything else.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .context("--url must start with http://")?;
        let authority = rest.split('/').next().unwrap_or_default();
        let addr: SocketAddrV4 = authority
            .parse()
            .with_context(|| format!("--url needs IP:PORT, got {authority:?}"))?;
        if !addr.ip().is_loopback() {
            bail!("refusing to load {addr}: only 127.0.0.0/8 targets are allowed");
        }
        Ok(Self {
            addr,
            authority: authority.to_owned(),
        })
    }
}

/// Connects to `target` from loopback source address number `idx % sources`
/// (127.0.0.2, 127.0.0.3, …), with `TCP_NODELAY` like a browser's socket.
pub async fn connect(target: &Target, idx: usize, sources: usize) -> std::io::Result<TcpStream> {
    let sources = sources.clamp(1, 250);
    // `sources` is at most 250, so this is at most 251 and fits the last octet.
    let octet = 2 + (idx % sources) as u8;
    let source = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, octet), 0));
    let socket = TcpSocket::new_v4()?;
    // Let connect() pick the source port per 4-tuple instead of bind() reserving one per
    // source address; otherwise the source address adds nothing to the port budget.
    set_bind_address_no_port(&socket);
    socket.bind(source)?;
    let stream = socket.connect(SocketAddr::V4(target.addr)).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn set_bind_address_no_port(socket: &TcpSocket) {
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a pointer to a c_int of the size we pass.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Raises the soft open-file limit to the hard limit; returns the limit now in force.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        let t = Target::parse("http://127.0.0.1:3000/socket.io/").unwrap();
        assert_eq!(t.authority, "127.0.0.1:3000");
        assert!(Target::parse("http://10.0.0.1:3000").is_err());
        assert!(Target::parse("http://localhost:3000").is_err());
        assert!(Target::parse("https://127.0.0.1:3000").is_err());
    }
}
