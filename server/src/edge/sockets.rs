//! Finding the socket behind a tiny_http connection.
//!
//! tiny_http hides the `TcpStream` of a connection, so an upgraded WebSocket
//! cannot get a read timeout, and a silent client would hold its thread forever;
//! nor can an SSE stream that ends close its connection: tiny_http keeps it open
//! waiting for a next request, so the browser would see neither data nor an end.
//! The socket is found among this process's descriptors by its two addresses
//! (unique for a live TCP connection) and given the timeout, or shut down, there.

use std::net::{Shutdown, SocketAddr};
use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

/// Sets `SO_RCVTIMEO` on the connected socket `local` ⇄ `peer`; false if not found.
pub fn set_read_timeout(local: SocketAddr, peer: SocketAddr, timeout: Duration) -> bool {
    with_socket(local, peer, |sock| {
        sock.set_read_timeout(Some(timeout)).is_ok()
    })
}

/// Shuts down both directions of the connected socket `local` ⇄ `peer`: what
/// was already written is still delivered, then the peer reads the end of the
/// stream, and tiny_http's reader on it wakes up and lets the connection go.
/// False if not found.
pub fn shutdown(local: SocketAddr, peer: SocketAddr) -> bool {
    with_socket(local, peer, |sock| sock.shutdown(Shutdown::Both).is_ok())
}

fn with_socket(
    local: SocketAddr,
    peer: SocketAddr,
    act: impl FnOnce(socket2::SockRef<'_>) -> bool,
) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    for entry in entries.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor was open a moment ago and is only borrowed for
        // the calls below. If another thread closed it in between, the calls
        // fail (EBADF); if the number was reused, the address check rejects it
        // unless it is this very connection.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&borrowed);
        let matches = sock.peer_addr().ok().and_then(|a| a.as_socket()) == Some(peer)
            && sock
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .map(|a| a.port())
                == Some(local.port());
        if matches {
            return act(sock);
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    use super::*;

    #[test]
    fn finds_an_accepted_socket_by_its_addresses() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert!(set_read_timeout(
            listener.local_addr().unwrap(),
            peer,
            Duration::from_millis(50)
        ));
        let started = std::time::Instant::now();
        let err = accepted.read(&mut [0u8; 1]).unwrap_err();
        assert!(matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ));
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(client);
    }

    #[test]
    fn a_shut_down_socket_ends_the_peers_stream_after_the_data() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut accepted, peer) = listener.accept().unwrap();
        std::io::Write::write_all(&mut accepted, b"last words").unwrap();
        assert!(shutdown(listener.local_addr().unwrap(), peer));
        let mut got = Vec::new();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"last words");
        // Our own reader wakes up too.
        assert_eq!(accepted.read(&mut [0u8; 1]).unwrap(), 0);
    }
}
