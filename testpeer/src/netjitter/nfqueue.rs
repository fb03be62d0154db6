//! The kernel's NFQUEUE protocol (`nfnetlink_queue`) on a netlink socket: just what the jitter
//! injector needs. Bind one queue with metadata-only copies, a queue length and fail-open;
//! receive the ids of queued packets; accept one id at a time, in any order; unbind.
//!
//! Written here rather than taken from a crate: `nfq` (the pure-Rust one on crates.io) keeps
//! its socket to itself, so it cannot be polled with a deadline, and every message it hands
//! out pins its whole receive buffer until the verdict. Here the socket is a plain
//! non-blocking fd to poll, and a held packet is just its 32-bit id.
//!
//! Message building and parsing are pure functions over byte slices (unit-tested below);
//! [`Queue`] is the socket around them. Netlink headers are in host byte order, NFQUEUE's own
//! fields in network byte order.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

const NLMSG_HDR_LEN: usize = 16;
const NFGEN_HDR_LEN: usize = 4;
const NLA_HDR_LEN: usize = 4;
/// Attribute types carry two flag bits above these.
const NLA_TYPE_MASK: u16 = 0x3fff;

const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;

const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = NFNL_SUBSYS_QUEUE << 8;
const NFQNL_MSG_VERDICT: u16 = NFNL_SUBSYS_QUEUE << 8 | 1;
const NFQNL_MSG_CONFIG: u16 = NFNL_SUBSYS_QUEUE << 8 | 2;

const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_CFG_MASK: u16 = 4;
const NFQA_CFG_FLAGS: u16 = 5;

const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_CFG_CMD_UNBIND: u8 = 2;
/// Copy only metadata to user space: the injector never looks inside a packet.
const NFQNL_COPY_META: u8 = 1;
/// Accept packets while the kernel's queue is full instead of dropping them: the injector
/// adds delay, never loss.
const NFQA_CFG_F_FAIL_OPEN: u32 = 1;
const NF_ACCEPT: u32 = 1;

/// Largest datagram read at once; metadata-only messages are a few hundred bytes.
const RECV_BUFFER: usize = 64 * 1024;
/// Socket receive buffer asked for, so a burst of packets does not overrun it (the kernel caps
/// it at `net.core.rmem_max`).
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;
/// Longest wait for the kernel's answer to a configuration message.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// One netlink message as the injector reads it.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A packet was queued: its id, for the verdict.
    Packet(u32),
    /// The kernel's answer to a request: 0 for success, else an errno.
    Ack(i32),
    /// Anything else (ignored).
    Other,
}

/// Appends a netlink attribute, padded to 4 bytes.
fn put_attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = u16::try_from(NLA_HDR_LEN + value.len()).unwrap_or(u16::MAX);
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// A message for the queue subsystem: netlink header, `nfgenmsg` naming the queue, attributes.
fn message(kind: u16, flags: u16, queue: u16, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut buf = vec![0; NLMSG_HDR_LEN];
    buf.extend_from_slice(&[0, 0]); // family AF_UNSPEC, version NFNETLINK_V0
    buf.extend_from_slice(&queue.to_be_bytes());
    for (kind, value) in attrs {
        put_attr(&mut buf, *kind, value);
    }
    let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
    buf[0..4].copy_from_slice(&len.to_ne_bytes());
    buf[4..6].copy_from_slice(&kind.to_ne_bytes());
    buf[6..8].copy_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    // Sequence number and port id stay 0: one request is outstanding at a time, and the kernel
    // fills in the port.
    buf
}

/// Binds this socket to `queue`.
pub fn bind_message(queue: u16) -> Vec<u8> {
    // command, padding, protocol family (unused by the kernel since 3.8)
    let cmd = [NFQNL_CFG_CMD_BIND, 0, 0, 0];
    message(NFQNL_MSG_CONFIG, NLM_F_ACK, queue, &[(NFQA_CFG_CMD, &cmd)])
}

/// Unbinds `queue`; the kernel then lets packets bypass it (with `--queue-bypass`) or drops them.
pub fn unbind_message(queue: u16) -> Vec<u8> {
    let cmd = [NFQNL_CFG_CMD_UNBIND, 0, 0, 0];
    message(NFQNL_MSG_CONFIG, NLM_F_ACK, queue, &[(NFQA_CFG_CMD, &cmd)])
}

/// Metadata-only copies, a queue length of `max_len` and fail-open, for `queue`.
pub fn config_message(queue: u16, max_len: u32) -> Vec<u8> {
    let mut params = 0u32.to_be_bytes().to_vec(); // copy range: nothing of the payload
    params.push(NFQNL_COPY_META);
    let flags = NFQA_CFG_F_FAIL_OPEN.to_be_bytes();
    message(
        NFQNL_MSG_CONFIG,
        NLM_F_ACK,
        queue,
        &[
            (NFQA_CFG_PARAMS, &params),
            (NFQA_CFG_QUEUE_MAXLEN, &max_len.to_be_bytes()),
            (NFQA_CFG_MASK, &flags),
            (NFQA_CFG_FLAGS, &flags),
        ],
    )
}

/// Accepts packet `id` of `queue`. No acknowledgement is asked for: the kernel answers only if
/// the verdict fails (an unknown id).
pub fn accept_message(queue: u16, id: u32) -> Vec<u8> {
    let mut hdr = NF_ACCEPT.to_be_bytes().to_vec();
    hdr.extend_from_slice(&id.to_be_bytes());
    message(NFQNL_MSG_VERDICT, 0, queue, &[(NFQA_VERDICT_HDR, &hdr)])
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(buf.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

/// The messages in one datagram from the kernel. A malformed tail ends the list (the kernel
/// does not send one; nothing is guessed from it).
pub fn parse(mut buf: &[u8]) -> Vec<Incoming> {
    let mut out = vec![];
    while let (Some(len), Some(kind)) = (u32_at(buf, 0), u16_at(buf, 4)) {
        let len = len as usize;
        if len < NLMSG_HDR_LEN || len > buf.len() {
            break;
        }
        let body = &buf[NLMSG_HDR_LEN..len];
        out.push(match kind {
            NLMSG_ERROR => body
                .get(0..4)
                .and_then(|b| b.try_into().ok())
                .map_or(Incoming::Other, |b| Incoming::Ack(-i32::from_ne_bytes(b))),
            NFQNL_MSG_PACKET => packet_id(body.get(NFGEN_HDR_LEN..).unwrap_or_default())
                .map_or(Incoming::Other, Incoming::Packet),
            _ => Incoming::Other,
        });
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    out
}

/// The packet id in a packet message's attributes (`NFQA_PACKET_HDR` starts with it).
fn packet_id(mut attrs: &[u8]) -> Option<u32> {
    while let (Some(len), Some(kind)) = (u16_at(attrs, 0), u16_at(attrs, 2)) {
        let len = usize::from(len);
        if len < NLA_HDR_LEN || len > attrs.len() {
            return None;
        }
        if kind & NLA_TYPE_MASK == NFQA_PACKET_HDR {
            let id = attrs.get(NLA_HDR_LEN..NLA_HDR_LEN + 4)?;
            return Some(u32::from_be_bytes(id.try_into().ok()?));
        }
        attrs = attrs.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    None
}

/// Waits until one of `fds` is ready, a signal comes or `timeout` (`None`: no limit) passes.
pub fn wait(fds: &mut [PollFd<'_>], timeout: Option<Duration>) -> io::Result<()> {
    // A timeout too large for a timespec is as good as none.
    let timeout = timeout.and_then(|t| Timespec::try_from(t).ok());
    match poll(fds, timeout.as_ref()) {
        Ok(_) | Err(Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A netlink socket bound to one NFQUEUE queue. Non-blocking: the caller polls it (it is an
/// [`AsFd`]) together with its other wake-ups.
pub struct Queue {
    fd: OwnedFd,
    num: u16,
    buf: Vec<u8>,
}

impl Queue {
    /// Opens the socket and binds `num` with the injector's settings. Packets that arrive
    /// while the kernel's answers are awaited are accepted at once.
    pub fn bind(num: u16, max_len: u32) -> io::Result<Self> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            Some(netlink::NETFILTER),
        )?;
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, 0))?;
        // Best effort: a smaller buffer only makes overruns likelier, and those are counted.
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&fd, SOCKET_BUFFER);
        let mut queue = Queue {
            fd,
            num,
            buf: vec![0; RECV_BUFFER],
        };
        queue.request(&bind_message(num))?;
        queue.request(&config_message(num, max_len))?;
        Ok(queue)
    }

    /// Sends a configuration message and waits (bounded) for the kernel's answer.
    fn request(&mut self, msg: &[u8]) -> io::Result<()> {
        self.send(msg)?;
        let deadline = Instant::now() + ACK_TIMEOUT;
        loop {
            let Some(messages) = self.recv()? else {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no answer from nfnetlink_queue within {ACK_TIMEOUT:?}"),
                    ));
                }
                wait(&mut [PollFd::new(&self.fd, PollFlags::IN)], Some(left))?;
                continue;
            };
            for incoming in messages {
                match incoming {
                    Incoming::Ack(0) => return Ok(()),
                    Incoming::Ack(errno) => return Err(io::Error::from_raw_os_error(errno)),
                    Incoming::Packet(id) => self.accept(id)?,
                    Incoming::Other => {}
                }
            }
        }
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        let kernel = SocketAddrNetlink::new(0, 0);
        rustix::net::sendto(&self.fd, msg, SendFlags::empty(), &kernel)?;
        Ok(())
    }

    /// Accepts packet `id`.
    pub fn accept(&self, id: u32) -> io::Result<()> {
        self.send(&accept_message(self.num, id))
    }

    /// The messages of the next datagram, or `None` when none is waiting.
    pub fn recv(&mut self) -> io::Result<Option<Vec<Incoming>>> {
        loop {
            match rustix::net::recv(&self.fd, &mut self.buf[..], RecvFlags::empty()) {
                Ok((len, _)) => return Ok(Some(parse(&self.buf[..len]))),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Unbinds the queue (closing the socket would too, but without telling whether it worked).
    pub fn unbind(&mut self) -> io::Result<()> {
        self.request(&unbind_message(self.num))
    }
}

impl AsFd for Queue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(msg: &[u8]) -> (u32, u16, u16) {
        (
            u32_at(msg, 0).unwrap(),
            u16_at(msg, 4).unwrap(),
            u16_at(msg, 6).unwrap(),
        )
    }

    #[test]
    fn verdict_names_queue_id_and_accept() {
        let msg = accept_message(7, 0x0102_0304);
        assert_eq!(header(&msg), (32, NFQNL_MSG_VERDICT, NLM_F_REQUEST));
        assert_eq!(
            &msg[16..20],
            &[0, 0, 0, 7],
            "nfgenmsg: AF_UNSPEC, v0, queue 7"
        );
        assert_eq!(u16_at(&msg, 20), Some(12), "attribute length");
        assert_eq!(u16_at(&msg, 22), Some(NFQA_VERDICT_HDR));
        assert_eq!(&msg[24..32], &[0, 0, 0, 1, 1, 2, 3, 4]);
    }

    #[test]
    fn config_pads_the_five_byte_params() {
        let msg = config_message(1, 5000);
        assert_eq!(msg.len() % 4, 0);
        assert_eq!(header(&msg).0 as usize, msg.len());
        assert_eq!(header(&msg).2, NLM_F_REQUEST | NLM_F_ACK);
        // params: length 9 (4 + be32 range + u8 mode), padded to 12
        assert_eq!(u16_at(&msg, 20), Some(9));
        assert_eq!(&msg[24..29], &[0, 0, 0, 0, NFQNL_COPY_META]);
        assert_eq!(u16_at(&msg, 32), Some(8));
        assert_eq!(u16_at(&msg, 34), Some(NFQA_CFG_QUEUE_MAXLEN));
        assert_eq!(&msg[36..40], &5000u32.to_be_bytes());
        let bind = bind_message(1);
        assert_eq!(&bind[24..28], &[NFQNL_CFG_CMD_BIND, 0, 0, 0]);
    }

    /// A packet message as the kernel sends it: another attribute first, then the header.
    fn packet(id: u32) -> Vec<u8> {
        let mut attrs = vec![];
        put_attr(&mut attrs, 5, &[9; 3]); // some attribute, padded
        let mut hdr = id.to_be_bytes().to_vec();
        hdr.extend_from_slice(&[8, 0, 3]); // hw protocol, hook
        put_attr(&mut attrs, NFQA_PACKET_HDR, &hdr);
        let mut msg = message(NFQNL_MSG_PACKET, 0, 1, &[]);
        msg.extend_from_slice(&attrs);
        let len = msg.len() as u32;
        msg[0..4].copy_from_slice(&len.to_ne_bytes());
        msg
    }

    #[test]
    fn parses_packets_and_acks_in_one_datagram() {
        let mut datagram = packet(41);
        datagram.extend(packet(42));
        let mut err = vec![0; NLMSG_HDR_LEN];
        err[0..4].copy_from_slice(&20u32.to_ne_bytes());
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err.extend_from_slice(&(-16i32).to_ne_bytes());
        datagram.extend(&err);
        assert_eq!(
            parse(&datagram),
            vec![
                Incoming::Packet(41),
                Incoming::Packet(42),
                Incoming::Ack(16)
            ]
        );
    }

    #[test]
    fn malformed_input_ends_the_list() {
        assert_eq!(parse(&[]), vec![]);
        assert_eq!(parse(&[1, 2, 3]), vec![]);
        let mut short = packet(1);
        short[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(parse(&short), vec![]);
        let mut bad_attr = packet(1);
        bad_attr[20..22].copy_from_slice(&2u16.to_ne_bytes());
        assert_eq!(parse(&bad_attr), vec![Incoming::Other]);
    }
}
