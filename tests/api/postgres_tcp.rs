//! PostgreSQL over TCP runs with `TCP_NODELAY` on every pooled socket (the patched sqlx-core, see
//! `patches/README.md`): without it each query's last packet waited ~40 ms for a delayed ACK.

use std::os::fd::RawFd;

use crate::helpers::spawn_app;

/// The remote port of a TCP socket, if `fd` is one.
fn peer_port(fd: RawFd) -> Option<u16> {
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `addr` and `len` are valid for writes of `len` bytes; a non-socket fd fails cleanly.
    let rc = unsafe { libc::getpeername(fd, (&raw mut addr).cast(), &mut len) };
    if rc != 0 {
        return None;
    }
    match i32::from(addr.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let v4: libc::sockaddr_in = unsafe { std::ptr::read((&raw const addr).cast()) };
            Some(u16::from_be(v4.sin_port))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let v6: libc::sockaddr_in6 = unsafe { std::ptr::read((&raw const addr).cast()) };
            Some(u16::from_be(v6.sin6_port))
        }
        _ => None,
    }
}

fn nodelay(fd: RawFd) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes; the fd is a TCP socket (checked by the caller).
    let rc = unsafe { libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, (&raw mut value).cast(), &mut len) };
    rc == 0 && value != 0
}

#[tokio::test]
async fn every_pooled_postgres_socket_has_nagle_switched_off() {
    let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("TEST_DATABASE_URL is not set: PostgreSQL over TCP is not under test");
        return;
    };
    let url = url::Url::parse(&base).expect("TEST_DATABASE_URL is a URL");
    if url.query_pairs().any(|(k, _)| k == "host") {
        panic!("TEST_DATABASE_URL must reach PostgreSQL over TCP, not a Unix socket: {base}");
    }
    let port = url.port().unwrap_or(5432);
    let app = spawn_app().await;
    // Enough concurrent work that the pool opens several connections.
    let calls = (0..8).map(|_| app.get_ok("/v1/logs", &app.server_key));
    futures_util::future::join_all(calls).await;

    // Other tests of this process open connections meanwhile; one caught between its connect and
    // the setsockopt that follows reads as off for an instant, so a socket fails only if it stays off.
    let to_postgres = || -> Vec<RawFd> {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|entry| entry.unwrap().file_name().to_string_lossy().parse::<RawFd>().ok())
            .filter(|fd| peer_port(*fd) == Some(port))
            .collect()
    };
    let sockets = to_postgres();
    assert!(!sockets.is_empty(), "no socket to PostgreSQL on port {port} was found");
    let off: Vec<RawFd> = sockets.into_iter().filter(|fd| !nodelay(*fd)).collect();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for fd in off {
        assert!(peer_port(fd) != Some(port) || nodelay(fd), "a socket to PostgreSQL (fd {fd}) has TCP_NODELAY off");
    }
}
