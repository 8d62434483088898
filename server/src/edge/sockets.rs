//! Finding the socket behind a tiny_http connection.
//!
//! tiny_http hides the `TcpStream` of a connection, so an upgraded WebSocket
//! cannot get a read timeout, and a silent client would hold its thread forever.
//! The socket is found among this process's descriptors by its two addresses
//! (unique for a live TCP connection) and given the timeout there.

use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

/// Sets `SO_RCVTIMEO` on the connected socket `local` ⇄ `peer`; false if not found.
pub fn set_read_timeout(local: SocketAddr, peer: SocketAddr, timeout: Duration) -> bool {
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
            return sock.set_read_timeout(Some(timeout)).is_ok();
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
}
